//! Throwaway PostgreSQL clusters for the database tests: `initdb` in a temporary directory, on a
//! port of their own, with their own `max_connections`, torn down when dropped. Never the shared
//! server.
//!
//! Where no PostgreSQL binaries exist the tests skip, loudly; under `CI=true` that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A role without superuser rights (slot limits apply to it), password-less (trust auth).
pub const APP_ROLE: &str = "app";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

/// Where the PostgreSQL binaries are: the newest `/usr/lib/postgresql/*/bin`, or `$PATH`.
fn find_binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let found = Command::new("sh")
            .arg("-c")
            .arg("command -v initdb")
            .output()
            .ok()?;
        let path = String::from_utf8(found.stdout).ok()?;
        Path::new(path.trim()).parent().map(Path::to_path_buf)
    })
}

/// Skips the calling test (returns `None`) when PostgreSQL is missing; panics under `CI=true`.
fn skip_or_fail(why: &str) -> Option<PgCluster> {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("PostgreSQL is required under CI=true, but {why}");
    }
    eprintln!("SKIP: {why}; this test needs PostgreSQL binaries (initdb, pg_ctl)");
    None
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb and the server
/// refuse to run as root).
fn run(bin: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let path = bin.join(program);
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&path);
        command
    } else {
        Command::new(&path)
    };
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", path.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("{program} {args:?} failed: {text}"))
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl PgCluster {
    /// Starts a cluster with `max_connections` (and 2 superuser-reserved slots), or returns
    /// `None` (after saying so) where PostgreSQL is not installed.
    pub fn start(max_connections: u32) -> Option<PgCluster> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let Some(bin) = find_binaries() else {
            return skip_or_fail(
                "no PostgreSQL binaries were found (looked in /usr/lib/postgresql/*/bin and $PATH)",
            );
        };
        let dir = std::env::temp_dir().join(format!(
            "lifecycle-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "cannot give {} to the postgres user",
                dir.display()
            );
        }
        let data = dir.join("data");
        let data_arg = data.to_string_lossy().into_owned();
        if let Err(error) = run(
            &bin,
            "initdb",
            &[
                "-D",
                &data_arg,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        ) {
            panic!("initdb failed: {error}");
        }
        let cluster = PgCluster {
            bin,
            dir,
            port: free_port(),
        };
        cluster.configure(max_connections);
        cluster.start_server();
        cluster.psql(&format!("CREATE ROLE {APP_ROLE} LOGIN"));
        cluster.psql(&format!("GRANT ALL ON SCHEMA public TO {APP_ROLE}"));
        Some(cluster)
    }

    fn configure(&self, max_connections: u32) {
        let settings = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = {max_connections}\nsuperuser_reserved_connections = 2\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            self.port,
            self.dir.display()
        );
        let conf = self.dir.join("data").join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("write postgresql.conf");
    }

    fn start_server(&self) {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        if let Err(error) = run(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "30", "start"],
        ) {
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the throwaway cluster did not start: {error}\n{server_log}");
        }
    }

    /// Stops the server (fast: active sessions are cut).
    pub fn stop(&self) {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let _ = run(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "30", "stop"],
        );
    }

    /// Restarts the server: every session is cut, as in a failover.
    pub fn restart(&self) {
        self.stop();
        self.start_server();
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `user` on database `postgres`.
    pub fn url_as(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/postgres", self.port)
    }

    /// A URL for the unprivileged [`APP_ROLE`].
    pub fn url(&self) -> String {
        self.url_as(APP_ROLE)
    }

    /// Runs SQL as the superuser through `psql` and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let host = self.dir.to_string_lossy().into_owned();
        match run(
            &self.bin,
            "psql",
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        ) {
            Ok(output) => output.trim().to_owned(),
            Err(error) => panic!("psql failed: {error}"),
        }
    }

    /// Makes `role` (created if needed) log in over TCP with `password` only (scram), and reloads.
    pub fn require_password(&self, role: &str, password: &str) {
        self.psql(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"));
        let hba = self.dir.join("data").join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        // First match wins: this line goes before the trust rules.
        let rules = format!("host all {role} 127.0.0.1/32 scram-sha-256\n{rules}");
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        self.psql("SELECT pg_reload_conf()");
    }

    /// Waits until `sql` (a `psql` query) prints `expected`, up to 10s.
    pub fn wait_for(&self, sql: &str, expected: &str) {
        let started = Instant::now();
        loop {
            let output = self.psql(sql);
            if output == expected {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "waited for `{sql}` to give {expected:?}; it gave {output:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let _ = run(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "-t", "30", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback listener that accepts connections and never answers: a black-holed database or a
/// proxy that lost its upstream. Lives until dropped.
#[derive(Debug)]
pub struct Silent {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Silent {
    /// Starts listening.
    pub fn start() -> Silent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Silent { port, stop }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
