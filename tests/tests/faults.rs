//! Faults injected into whole programs (`tests/fixtures/faults`), on a two-worker and on a
//! current-thread runtime: each breaks a promise the way user code does (a close or a destructor
//! that blocks its thread, a tick that spins, a stderr nobody reads), and the test checks, from
//! outside the process and with tight bounds, that the program still ends within its budget plus
//! 100 ms with the right exit code and the culprit named.
//!
//! The fixtures' budget is 2 s. The tests run one at a time: a spinning program takes a core.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lifecycle_tests::{LIMIT, Program};

const MULTI_THREAD: &str = env!("CARGO_BIN_EXE_lifecycle-fixture-faults");
const CURRENT_THREAD: &str = env!("CARGO_BIN_EXE_lifecycle-fixture-faults-current-thread");

/// The fixtures' `shutdown_timeout`.
const BUDGET: Duration = Duration::from_secs(2);

/// The promise: every fault ends within the budget plus this.
const PROMISED: Duration = Duration::from_millis(100);

/// What the measurement from outside adds: delivering the signal, the exit, noticing it (the
/// exit is polled every 5 ms).
const MEASURING: Duration = Duration::from_millis(60);

/// A second signal ends the program "at once": the watchdog thread hears it and exits without
/// waiting for anything. Measured 10–60 ms; the bound leaves room for a loaded machine (one core
/// is taken by the spinning fixture) and is still far inside the budget.
const AT_ONCE: Duration = Duration::from_millis(300);

/// One program at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Ended {
    code: Option<i32>,
    /// From the signal to the exit.
    took: Duration,
    stderr: String,
}

/// Starts `fixture` with `scenario`, waits for `ready`, sends SIGTERM, and waits for the end.
fn terminate(fixture: &str, scenario: &str, ready: &str) -> Ended {
    let mut command = Command::new(fixture);
    command.arg(scenario);
    let mut program = Program::start(command, &[]);
    program.wait_for(ready);
    let signalled = Instant::now();
    program.signal(libc::SIGTERM);
    let (code, exited, stderr) = program.finish_timed();
    Ended {
        code,
        took: exited - signalled,
        stderr,
    }
}

/// Asserts the bound, and records the time for FAULTS.md.
fn assert_within(ended: &Ended, limit: Duration) {
    lifecycle_tests::record_fault_time(ended.took);
    assert!(
        ended.took <= limit + MEASURING,
        "took {:?} from SIGTERM to exit, promised {limit:?}:\n{}",
        ended.took,
        ended.stderr
    );
}

fn assert_line(stderr: &str, line: &str) {
    assert!(stderr.contains(line), "no line with {line:?} in:\n{stderr}");
}

#[test]
fn a_close_that_blocks_its_thread_is_cut_off_at_its_limit_and_the_sequence_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let ended = terminate(MULTI_THREAD, "blocking-close", "ready: blocking-close");
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    // Its close timeout is 300 ms; the close sleeps 20 s before its first `.await`.
    assert!(ended.took >= Duration::from_millis(300), "{:?}", ended.took);
    assert_within(&ended, Duration::from_millis(300) + PROMISED);
    assert_line(
        &ended.stderr,
        "TIMED OUT resource blocking-close — did not close within 300ms",
    );
    assert_line(&ended.stderr, "closed    resource quick-close");
}

#[test]
fn a_close_that_blocks_the_only_thread_ends_at_the_hard_deadline_named() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let ended = terminate(CURRENT_THREAD, "blocking-close", "ready: blocking-close");
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    assert!(ended.took >= BUDGET, "{:?}", ended.took);
    assert_within(&ended, BUDGET + PROMISED);
    assert_line(
        &ended.stderr,
        "shutdown did not finish within its budget of 2s (+50ms): exiting now with code 1.",
    );
    assert_line(
        &ended.stderr,
        "TIMED OUT resource blocking-close — did not finish closing: still closing when the process exited",
    );
    assert_line(
        &ended.stderr,
        "SKIPPED   resource quick-close — not reached: the process exited first",
    );
}

#[test]
fn a_spinning_tick_is_named_within_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let ended = terminate(MULTI_THREAD, "spinning-tick", "the tick spins now");
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    assert_within(&ended, BUDGET + PROMISED);
    assert_line(
        &ended.stderr,
        "LEAKED    task spinner — aborted, but never polled again: its worker thread is blocked in synchronous code (by this task or another)",
    );
}

#[test]
fn a_tick_spinning_on_the_only_thread_cannot_keep_the_process_alive() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let ended = terminate(CURRENT_THREAD, "spinning-tick", "the tick spins now");
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    assert!(ended.took >= BUDGET, "{:?}", ended.took);
    assert_within(&ended, BUDGET + PROMISED);
    assert_line(
        &ended.stderr,
        "TIMED OUT task spinner — did not finish: still running when the process exited",
    );
}

#[test]
fn a_second_signal_ends_a_wedged_runtime_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let mut command = Command::new(CURRENT_THREAD);
    command.arg("spinning-tick");
    let mut program = Program::start(command, &[]);
    program.wait_for("the tick spins now");
    program.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    program.signal(libc::SIGTERM);
    let (code, exited, stderr) = program.finish_timed();
    assert_eq!(code, Some(130), "{stderr}");
    let took = exited - second;
    lifecycle_tests::record_fault_time(took);
    assert!(took <= AT_ONCE, "took {took:?}:\n{stderr}");
    assert_line(
        &stderr,
        "SIGTERM during shutdown: exiting now with code 130.",
    );
    assert_line(
        &stderr,
        "TIMED OUT task spinner — did not finish: still running when the process exited",
    );
}

#[test]
fn a_destructor_that_blocks_when_aborted_is_named_within_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let ended = terminate(MULTI_THREAD, "blocking-drop", "ready: blocking-drop");
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    assert_within(&ended, BUDGET + PROMISED);
    assert_line(
        &ended.stderr,
        "LEAKED    task drop-blocks — aborted, but its destructor has not returned: it blocks its worker thread in synchronous code",
    );
}

#[test]
fn a_destructor_that_blocks_the_only_thread_ends_at_the_hard_deadline() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let ended = terminate(CURRENT_THREAD, "blocking-drop", "ready: blocking-drop");
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    assert_within(&ended, BUDGET + PROMISED);
    assert_line(
        &ended.stderr,
        "TIMED OUT task drop-blocks — did not finish: still running when the process exited",
    );
}

/// Runs `scenario` with stderr a pipe given to `stderr_reader` (which may drop it or never read
/// it), waits for the ready file, sends SIGTERM; returns the exit code and the time it took.
fn terminate_with_stderr(
    fixture: &str,
    scenario: &str,
    keep_reader: bool,
) -> (Option<i32>, Duration) {
    let ready = std::env::temp_dir().join(format!(
        "lifecycle-faults-{}-{scenario}-{keep_reader}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(fixture)
        .arg(scenario)
        .env("FIXTURE_READY_FILE", &ready)
        .env_remove("LIFECYCLE_SHUTDOWN_TIMEOUT")
        .env_remove("LIFECYCLE_DRAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the fixture");
    let reader = child.stderr.take().expect("piped stderr");
    let kept = keep_reader.then_some(reader);
    let started = Instant::now();
    while !ready.exists() {
        assert!(started.elapsed() < LIMIT, "the fixture never got ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = i32::try_from(child.id()).expect("pid fits in i32");
    let signalled = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for the fixture") {
            break status.code();
        }
        if signalled.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("the fixture did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = signalled.elapsed();
    drop(kept);
    let _ = std::fs::remove_file(&ready);
    (code, took)
}

#[test]
fn a_stderr_whose_reader_is_gone_does_not_change_the_exit_code() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let (code, _) = terminate_with_stderr(MULTI_THREAD, "wait-signal", false);
    assert_eq!(
        code,
        Some(0),
        "a clean shutdown exits 0 even when the report cannot be printed"
    );
    let (code, _) = terminate_with_stderr(MULTI_THREAD, "blocking-close", false);
    assert_eq!(code, Some(1), "an unclean one still exits 1");
    let (code, took) = terminate_with_stderr(CURRENT_THREAD, "blocking-close", false);
    assert_eq!(code, Some(1), "the watchdog's exit too");
    lifecycle_tests::record_fault_time(took);
    assert!(took <= BUDGET + PROMISED + MEASURING, "{took:?}");
}

#[test]
fn a_full_stderr_nobody_reads_loses_the_report_not_the_exit() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let (code, took) = terminate_with_stderr(MULTI_THREAD, "full-stderr", true);
    assert_eq!(code, Some(0));
    lifecycle_tests::record_fault_time(took);
    // Printing gives up after one second.
    assert!(
        took <= Duration::from_millis(1_000) + PROMISED + MEASURING,
        "{took:?}"
    );
}

/// Whether any process of group `pgid` is running (zombies do not count).
fn group_running(pgid: u32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|process| {
            let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z"
        })
}

#[test]
fn a_child_ignoring_sigterm_past_the_budget_does_not_outlive_the_program() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let mut command = Command::new(MULTI_THREAD);
    command.arg("stubborn-child");
    let mut program = Program::start(command, &[]);
    program.wait_for("ready: stubborn-child");
    let signalled = Instant::now();
    program.signal(libc::SIGTERM);
    let (code, exited, stderr) = program.finish_timed();
    let group: u32 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("child group: "))
        .and_then(|group| group.trim().parse().ok())
        .expect("the fixture printed its child's group");
    assert_eq!(code, Some(1), "{stderr}");
    lifecycle_tests::record_fault_time(exited - signalled);
    assert!(
        exited - signalled <= BUDGET + PROMISED + MEASURING,
        "{:?}",
        exited - signalled
    );
    // Its close was cut off by the budget before it could SIGKILL.
    assert_line(
        &stderr,
        "TIMED OUT process stubborn-child — cut off after 2.00s by the shutdown budget",
    );
    assert!(
        !group_running(group),
        "the child's group outlived the program:\n{stderr}"
    );
}

#[test]
fn a_signal_during_start_up_ends_the_program_at_once_naming_what_it_waited_for() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // The database accepts connections and never answers; its start-up budget is a minute.
    let ended = terminate(MULTI_THREAD, "start-up-hangs", "ready: connecting");
    assert_eq!(ended.code, Some(1), "it did not start: {}", ended.stderr);
    // Not at the body's stop timeout (300 ms, when it would be aborted), but at once.
    assert_within(&ended, Duration::from_millis(200));
    assert_line(
        &ended.stderr,
        "Error: \"gave up connecting to `orders` after",
    );
    assert_line(
        &ended.stderr,
        "shutdown began while the database was starting up",
    );
    assert!(
        !ended.stderr.contains("ABORTED"),
        "the body returned, it was not aborted:\n{}",
        ended.stderr
    );
}

#[test]
fn a_second_signal_sigkills_a_child_that_ignores_sigterm_and_exits_130() {
    let _serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
    let mut command = Command::new(MULTI_THREAD);
    command.arg("stubborn-child");
    let mut program = Program::start(command, &[]);
    program.wait_for("ready: stubborn-child");
    let group: u32 = program
        .seen()
        .iter()
        .find_map(|line| line.strip_prefix("child group: "))
        .and_then(|group| group.trim().parse().ok())
        .expect("the fixture printed its child's group");
    program.signal(libc::SIGTERM);
    // The first signal's shutdown sends the child SIGTERM, which it ignores; its 10 s term
    // timeout keeps the close waiting.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        group_running(group),
        "the child should have outlived SIGTERM:\n{}",
        program.seen().join("\n")
    );
    let second = Instant::now();
    program.signal(libc::SIGTERM);
    let (code, exited, stderr) = program.finish_timed();
    let took = exited - second;
    // SIGKILL takes effect asynchronously: give the kernel a moment, no more.
    let killed = (0..100).any(|_| {
        let gone = !group_running(group);
        if !gone {
            std::thread::sleep(Duration::from_millis(5));
        }
        gone
    });
    if !killed {
        // SAFETY: killpg(2) on the group our fixture started, so it does not outlive the test.
        unsafe { libc::killpg(group as i32, libc::SIGKILL) };
    }
    assert!(
        killed,
        "the child ignores SIGTERM: only SIGKILL ends it, and it outlived the program:\n{stderr}"
    );
    lifecycle_tests::record_fault_time(took);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took <= AT_ONCE, "took {took:?}:\n{stderr}");
    assert_line(
        &stderr,
        "SIGTERM during shutdown: exiting now with code 130.",
    );
    assert_line(
        &stderr,
        "TIMED OUT resource stubborn-child — did not finish closing: still closing when the process exited",
    );
}
