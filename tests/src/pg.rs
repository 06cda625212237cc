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

/// The programs a cluster needs, all in one directory (`psql` may live elsewhere: see
/// [`program`]).
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where the PostgreSQL binaries are: the newest `/usr/lib/postgresql/*/bin`, or `$PATH`.
fn find_binaries() -> Option<PathBuf> {
    find_binaries_in(
        Path::new("/usr/lib/postgresql"),
        std::env::var_os("PATH").as_deref(),
    )
}

/// Whether `path` is a file someone may execute.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn has_server_programs(dir: &Path) -> bool {
    SERVER_PROGRAMS
        .iter()
        .all(|program| is_executable(&dir.join(program)))
}

/// A version directory's name as numbers ("9.6" is [9, 6], "15" is [15]); `None` for other
/// names.
fn version_key(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The newest `root/<version>/bin` (by version number, not text: 15 is newer than 9.6) that holds
/// the server programs; else the first directory of `search_path` that does.
fn find_binaries_in(root: &Path, search_path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let key = version_key(entry.file_name().to_str()?)?;
            Some((key, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_server_programs(bin))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .or_else(|| std::env::split_paths(search_path?).find(|dir| has_server_programs(dir)))
}

/// `bin/name` when it exists, else `name` found on `$PATH` (`psql` is often in `/usr/bin` while
/// the server programs are elsewhere), else `bin/name` (to fail naming it).
fn program(bin: &Path, name: &str) -> PathBuf {
    let beside = bin.join(name);
    if is_executable(&beside) {
        return beside;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| is_executable(candidate))
        })
        .unwrap_or(beside)
}

/// Skips the calling test (returns `None`) when PostgreSQL is missing; panics under `CI=true`
/// ([`crate::skip::skip_or_fail`]).
fn skip_or_fail(why: &str) -> Option<PgCluster> {
    crate::skip::skip_or_fail("PostgreSQL binaries (initdb, pg_ctl, postgres)", why);
    None
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb and the server
/// refuse to run as root).
fn run(bin: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let path = self::program(bin, program);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary one.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lifecycle-pg-search-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Fake executables `programs` in `dir`.
    fn fake(dir: &Path, programs: &[&str]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        for program in programs {
            let path = dir.join(program);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir.to_path_buf()
    }

    #[test]
    fn versions_sort_by_number_not_text() {
        let mut names = vec!["9.6", "15", "10", "9.10", "13.2", "nightly"];
        names.sort_by_key(|name| version_key(name));
        assert_eq!(names, ["nightly", "9.6", "9.10", "10", "13.2", "15"]);
    }

    #[test]
    fn the_newest_complete_version_wins_over_path() {
        let root = scratch("newest");
        let newest = fake(&root.join("lib/15/bin"), &SERVER_PROGRAMS);
        fake(&root.join("lib/9.6/bin"), &SERVER_PROGRAMS);
        // Newer, but without a server: not a candidate.
        fake(&root.join("lib/16/bin"), &["initdb", "pg_ctl"]);
        let on_path = fake(&root.join("path"), &SERVER_PROGRAMS);
        let path = std::env::join_paths([&on_path]).unwrap();
        assert_eq!(
            find_binaries_in(&root.join("lib"), Some(&path)),
            Some(newest)
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn path_is_searched_in_order_when_the_versioned_tree_is_missing_or_empty() {
        let root = scratch("path");
        let empty = fake(&root.join("empty"), &[]);
        let partial = fake(&root.join("partial"), &["initdb"]);
        let first = fake(&root.join("first"), &SERVER_PROGRAMS);
        let second = fake(&root.join("second"), &SERVER_PROGRAMS);
        let path = std::env::join_paths([&empty, &partial, &first, &second]).unwrap();
        // No tree at all.
        assert_eq!(
            find_binaries_in(&root.join("absent"), Some(&path)),
            Some(first.clone())
        );
        // A tree with no complete version.
        fake(&root.join("lib/14/bin"), &["pg_ctl"]);
        assert_eq!(
            find_binaries_in(&root.join("lib"), Some(&path)),
            Some(first)
        );
        // Nothing anywhere.
        let path = std::env::join_paths([&empty, &partial]).unwrap();
        assert_eq!(find_binaries_in(&root.join("lib"), Some(&path)), None);
        assert_eq!(find_binaries_in(&root.join("absent"), None), None);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_program_not_beside_the_server_is_found_on_path() {
        let root = scratch("program");
        let bin = fake(&root.join("bin"), &["initdb"]);
        assert_eq!(program(&bin, "initdb"), bin.join("initdb"));
        // `sh` is on every PATH; it is not in `bin`.
        let sh = program(&bin, "sh");
        assert_ne!(sh, bin.join("sh"));
        assert!(is_executable(&sh), "{}", sh.display());
        let _ = std::fs::remove_dir_all(root);
    }
}
