//! Support for the integration tests: running a program as a child process, reading its stderr,
//! signalling it, and bounding every wait so a hang fails instead of freezing CI.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Far above what any scenario takes: a hang fails the test instead of freezing CI.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A child program whose stderr is read line by line as it comes.
#[derive(Debug)]
pub struct Program {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Program {
    /// Starts `command` with stderr piped and `LIFECYCLE_*` settings cleared (add them back with
    /// `env`).
    pub fn start(mut command: Command, env: &[(&str, &str)]) -> Program {
        command
            .env_remove("LIFECYCLE_SHUTDOWN_TIMEOUT")
            .env_remove("LIFECYCLE_DRAIN")
            .env("RUST_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the child program");
        let stderr = child.stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Program {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a line contains `needle` (failing after [`LIMIT`]).
    pub fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no line containing {needle:?}; saw:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// The stderr lines read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// The address a server program logged as `listening address=...` (waiting for the line).
    pub fn listening_address(&mut self) -> std::net::SocketAddr {
        self.logged_address("listening")
    }

    /// The address in the latest line holding `message` and `address=...` (waiting for one
    /// when none was seen yet).
    pub fn logged_address(&mut self, message: &str) -> std::net::SocketAddr {
        if !self.seen().iter().any(|line| line.contains(message)) {
            self.wait_for(message);
        }
        let line = self
            .seen()
            .iter()
            .rev()
            .find(|line| line.contains(message))
            .expect("the line just seen");
        line.split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// Sends `signal` (a `libc::SIG*` number) to the program.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits in i32");
        // SAFETY: kill(2) on a pid we own with a valid signal number has no memory effects.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for the program to exit (killing it past [`LIMIT`]); returns its exit code and all of
    /// its stderr.
    pub fn finish(self) -> (Option<i32>, String) {
        let (code, _, stderr) = self.finish_timed();
        (code, stderr)
    }

    /// Like [`finish`](Self::finish), also returning when the program exited (before its stderr
    /// was read to the end).
    pub fn finish_timed(mut self) -> (Option<i32>, Instant, String) {
        let started = Instant::now();
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                break status.code();
            }
            if started.elapsed() > LIMIT {
                let _ = self.child.kill();
                panic!(
                    "the child did not exit within {LIMIT:?}; saw:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let exited = Instant::now();
        // The reader thread ends at end of file.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (code, exited, self.seen.join("\n"))
    }
}

/// A test that fails before [`Program::finish`] still ends its program: SIGTERM (a clean stop,
/// which also stops the program's managed subprocesses), a second SIGTERM if it is still there
/// after 3 s (the runtime then kills them and exits at once), and SIGKILL last.
impl Drop for Program {
    fn drop(&mut self) {
        let gone = |child: &mut Child, within: Duration| {
            let deadline = Instant::now() + within;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return true,
                    Ok(None) if Instant::now() >= deadline => return false,
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        };
        if gone(&mut self.child, Duration::ZERO) {
            return;
        }
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        for within in [Duration::from_secs(3), Duration::from_secs(1)] {
            // SAFETY: kill(2) on a pid we own (not reaped yet) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            if gone(&mut self.child, within) {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records how long the current test's fault took to end, measured from outside, for the
/// "measured" column of FAULTS.md. Written only when `LIFECYCLE_FAULT_TIMES` names a file
/// (`LIFECYCLE_FAULT_TIMES=$PWD/target/fault-times.tsv cargo test --workspace`); the test's own
/// bound is what asserts. Call it on the test's own thread: the line is keyed by the thread's
/// name, which libtest sets to the test's.
pub fn record_fault_time(took: Duration) {
    use std::io::Write;

    let Some(path) = std::env::var_os("LIFECYCLE_FAULT_TIMES") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    // `faults-0123abcd` → `faults`: the test file's name.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => stem,
        })
        .unwrap_or_default();
    let line = format!("{binary}::{test}\t{}\n", took.as_millis());
    // One `write` of one short line to a file opened for appending: lines of tests running at
    // once do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        panic!("cannot record the fault's time in {path:?}: {error}");
    }
}

pub mod http;
pub mod pg;
pub mod skip;
