//! `#[main]` under systemd (feature `systemd`): a real unix datagram socket stands in for the
//! service manager as `NOTIFY_SOCKET`, and the test reads what the program tells it, in order and
//! in time.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use lifecycle_tests::{LIMIT, Program};

const FIXTURE: &str = env!("CARGO_BIN_EXE_lifecycle-fixture");

/// The socket systemd would listen on, in a directory of the test's own.
struct Manager {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    started: Instant,
}

impl Manager {
    fn new(test: &str) -> Manager {
        let path =
            std::env::temp_dir().join(format!("lifecycle-notify-{test}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Manager {
            socket,
            path,
            started: Instant::now(),
        }
    }

    /// Reads every message for `how_long`, on a thread of its own, each with when it came.
    fn read_for(&self, how_long: Duration) -> std::thread::JoinHandle<Vec<(Duration, String)>> {
        let socket = self.socket.try_clone().unwrap();
        let started = self.started;
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buffer = [0u8; 4096];
            let deadline = Instant::now() + how_long.min(LIMIT);
            while Instant::now() < deadline {
                if let Ok(len) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
                    seen.push((started.elapsed(), text));
                }
            }
            seen
        })
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn start(scenario: &str, manager: &Manager) -> Program {
    // systemd names the process the pings are for in `WATCHDOG_PID`: the shell sets it to its
    // own pid, which the fixture keeps through `exec`.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$1\"")
        .arg(FIXTURE)
        .arg(scenario);
    Program::start(
        command,
        &[
            ("NOTIFY_SOCKET", manager.path.to_str().unwrap()),
            // Pings every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    )
}

#[test]
fn ready_stopping_extend_timeout_status_and_watchdog_come_in_order_and_in_time() {
    let manager = Manager::new("order");
    let mut program = start("systemd", &manager);
    program.wait_for("ready: systemd");
    // Half a second of service (READY, then pings), then the 2.2 s shutdown.
    let reader = manager.read_for(Duration::from_secs(4));
    std::thread::sleep(Duration::from_millis(500));
    let signalled = manager.started.elapsed();
    program.signal(libc::SIGTERM);
    let (code, stderr) = program.finish();
    let messages = reader.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let has = |(_, text): &(Duration, String), line: &str| text.lines().any(|l| l == line);
    // Pings may start with the runtime; the first thing said is READY.
    let first = &messages
        .iter()
        .find(|message| !has(message, "WATCHDOG=1"))
        .unwrap_or_else(|| panic!("nothing but pings: {messages:?}"))
        .1;
    assert!(
        first.lines().any(|line| line == "READY=1") && first.contains("STATUS=ready"),
        "READY first: {messages:?}"
    );
    let pings: Vec<Duration> = messages
        .iter()
        .filter(|message| has(message, "WATCHDOG=1"))
        .map(|(at, _)| *at)
        .filter(|at| *at < signalled)
        .collect();
    assert!(
        pings.len() >= 3,
        "pings every 100 ms while serving: {messages:?}"
    );
    let stopping = messages
        .iter()
        .position(|message| has(message, "STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1: {messages:?}"));
    let text = &messages[stopping].1;
    assert!(
        text.contains("EXTEND_TIMEOUT_USEC=3050000"),
        "the budget (3 s) and the watchdog's grace: {text}"
    );
    assert!(text.contains("STATUS=shutting down: SIGTERM"), "{text}");
    assert!(
        messages[stopping].0 - signalled < Duration::from_millis(500),
        "at the signal: {messages:?}"
    );
    // Every second while it waits: more time, and what it waits for.
    let progress: Vec<&(Duration, String)> = messages[stopping + 1..]
        .iter()
        .filter(|(_, text)| text.contains("EXTEND_TIMEOUT_USEC="))
        .collect();
    assert_eq!(progress.len(), 2, "at 1 s and 2 s: {messages:?}");
    for (_, text) in &progress {
        assert!(
            text.contains("STATUS=shutting down: waiting for task slow-stopper"),
            "{text}"
        );
    }
    let extended = |text: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix("EXTEND_TIMEOUT_USEC="))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        extended(&progress[0].1) > extended(&progress[1].1),
        "what is left shrinks: {progress:?}"
    );
}

#[test]
fn a_wedged_runtime_stops_the_watchdog_pings() {
    let manager = Manager::new("wedged");
    let mut program = start("systemd-wedged", &manager);
    program.wait_for("ready: systemd-wedged");
    let mut before = Vec::new();
    let reader = manager.read_for(Duration::from_secs(3));
    program.wait_for("wedged");
    let wedged_at = manager.started.elapsed();
    let messages = reader.join().unwrap();
    program.signal(libc::SIGKILL);
    let _ = program.finish();
    for (at, text) in &messages {
        if text.lines().any(|line| line == "WATCHDOG=1") {
            before.push(*at);
        }
    }
    let (served, after): (Vec<Duration>, Vec<Duration>) =
        before.iter().partition(|at| **at < wedged_at);
    // From the wedge to the last ping (zero when none came after it).
    let last = after
        .iter()
        .max()
        .map_or(Duration::ZERO, |at| *at - wedged_at);
    lifecycle_tests::record_fault_time(last);
    assert!(
        served.len() >= 2,
        "pings while the runtime ran: {messages:?}"
    );
    // A ping already on its way as the workers were taken may land just after.
    let late: Vec<&Duration> = after
        .iter()
        .filter(|at| **at > wedged_at + Duration::from_millis(150))
        .collect();
    assert!(
        late.is_empty(),
        "no ping once every worker is blocked (wedged at {wedged_at:?}): {late:?}"
    );
}
