//! `#[lifecycle_runtime::main]` as a real process: exit codes, signals, the printed report, bad
//! configuration and lingering OS threads. Runs `lifecycle-fixture` (tests/fixtures) as a child.

use std::process::Command;
use std::time::{Duration, Instant};

use lifecycle_tests::Program;

const FIXTURE: &str = env!("CARGO_BIN_EXE_lifecycle-fixture");

struct Run {
    code: Option<i32>,
    /// From starting the program to its exit.
    took: Duration,
    stderr: String,
}

fn start(scenario: &str, env: &[(&str, &str)]) -> Program {
    let mut command = Command::new(FIXTURE);
    command.arg(scenario);
    Program::start(command, env)
}

/// Runs a scenario to the end with the given environment.
fn run(scenario: &str, env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let (code, exited, stderr) = start(scenario, env).finish_timed();
    Run {
        code,
        took: exited - started,
        stderr,
    }
}

/// The program was refused at start: exit 2, `line` in its stderr, its body never ran.
fn assert_refused_at_start(run: &Run, line: &str) {
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains(line), "no {line:?} in:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("ready:"),
        "the body never ran: {}",
        run.stderr
    );
}

#[test]
fn a_clean_run_exits_zero_and_prints_the_report() {
    let run = run("clean", &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("shutdown: main returned · clean"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("stopped   task server"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("stopped   task ticker"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("LEAKED"),
        "no false lingering threads: {}",
        run.stderr
    );
}

#[test]
fn main_returning_an_error_exits_one_and_prints_it() {
    let run = run("error", &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("shutdown: main returned an error: \"could not bind port 8080\""),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Error: \"could not bind port 8080\""),
        "{}",
        run.stderr
    );
}

#[test]
fn main_panicking_exits_one() {
    let run = run("panic", &[]);
    lifecycle_tests::record_fault_time(run.took);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("Error: main panicked: config file is corrupt"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_task_that_had_to_be_aborted_makes_the_exit_code_one() {
    let run = run("stuck-task", &[]);
    lifecycle_tests::record_fault_time(run.took);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("ABORTED   task stubborn"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_lingering_os_thread_is_listed_by_name_and_makes_the_exit_code_one() {
    let run = run("leak-thread", &[]);
    lifecycle_tests::record_fault_time(run.took);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("LEAKED    thread rogue-worker"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("tokio"),
        "the runtime's own threads are not listed: {}",
        run.stderr
    );
}

#[test]
fn a_critical_failure_exits_one_and_says_why() {
    let run = run("critical", &[]);
    lifecycle_tests::record_fault_time(run.took);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("shutdown: critical task `watchdog` failed: heartbeat lost"),
        "{}",
        run.stderr
    );
}

#[test]
fn sigterm_shuts_down_cleanly_with_exit_zero() {
    let mut program = start("wait-signal", &[]);
    program.wait_for("ready: wait-signal");
    program.signal(libc::SIGTERM);
    let (code, stderr) = program.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("shutdown: SIGTERM received · clean"),
        "{stderr}"
    );
    assert!(stderr.contains("stopped   task main"), "{stderr}");
}

#[test]
fn readiness_is_starting_until_the_body_marks_it_ready() {
    let mut program = start("readiness", &[]);
    program.wait_for("readiness: ready");
    program.signal(libc::SIGTERM);
    let (code, stderr) = program.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let seen: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("readiness: "))
        .collect();
    // No drain: the body hears the stop signal with tasks already told to stop.
    assert_eq!(seen, ["starting", "ready", "stopping"], "{stderr}");
}

/// The last line of stderr that parses as JSON.
fn last_json(stderr: &str) -> serde_json::Value {
    stderr
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON line in:\n{stderr}"))
}

#[test]
fn a_json_report_is_one_line_with_every_entry_and_the_exit_code() {
    let run = run("clean", &[("LIFECYCLE_REPORT", "json")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !run.stderr.contains("outcome   entry"),
        "no text report: {}",
        run.stderr
    );
    let report = last_json(&run.stderr);
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["reason"]["kind"], "main_returned", "{report}");
    let names: Vec<&str> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    for name in ["server", "ticker"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    // Main's error travels with it.
    let run = self::run("error", &[("LIFECYCLE_REPORT", "json")]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let report = last_json(&run.stderr);
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["error"], "\"could not bind port 8080\"");
}

#[test]
fn report_off_prints_no_report_and_keeps_the_exit_code() {
    let run = run("error", &[("LIFECYCLE_REPORT", "off")]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(!run.stderr.contains("shutdown:"), "{}", run.stderr);
    assert!(!run.stderr.contains("Error:"), "{}", run.stderr);
}

#[test]
fn a_report_format_that_does_not_exist_is_refused_at_start() {
    let run = run("clean", &[("LIFECYCLE_REPORT", "bogus")]);
    lifecycle_tests::record_fault_time(run.took);
    assert_refused_at_start(
        &run,
        "environment variable LIFECYCLE_REPORT=\"bogus\" is not a report format; write one of text, json, tracing, off, or unset it to use text",
    );
}

#[test]
fn a_long_shutdown_says_every_second_how_far_it_has_come() {
    let mut program = start("slow-stop", &[]);
    program.wait_for("ready: slow-stop");
    program.signal(libc::SIGTERM);
    let (code, stderr) = program.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("of 3s budget; waiting for:"))
        .collect();
    // At 1 s and 2 s; it ends at 2.2 s.
    assert_eq!(progress.len(), 2, "{stderr}");
    for line in &progress {
        assert!(line.contains("task slow-stopper"), "{line}");
    }
    assert!(progress[0].starts_with("shutdown: 1.0"), "{}", progress[0]);
    assert!(progress[1].starts_with("shutdown: 2.0"), "{}", progress[1]);

    // The same as JSON lines.
    let mut program = start("slow-stop", &[("LIFECYCLE_REPORT", "json")]);
    program.wait_for("ready: slow-stop");
    program.signal(libc::SIGTERM);
    let (code, stderr) = program.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let progress: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|value| value.get("shutdown_progress").is_some())
        .collect();
    assert_eq!(progress.len(), 2, "{stderr}");
    assert_eq!(
        progress[0]["shutdown_progress"]["waiting_for"][0],
        "task slow-stopper"
    );
    assert_eq!(last_json(&stderr)["exit_code"], 0);

    // As tracing events, from a task of the runtime (the watchdog thread never calls a
    // subscriber), then the summary event.
    let mut program = start("slow-stop", &[("LIFECYCLE_REPORT", "tracing")]);
    program.wait_for("ready: slow-stop");
    program.signal(libc::SIGTERM);
    let (code, stderr) = program.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("shutdown in progress"))
        .collect();
    assert_eq!(progress.len(), 2, "{stderr}");
    for line in &progress {
        assert!(line.contains("waiting_for=task slow-stopper"), "{line}");
        assert!(line.contains("budget_secs=3"), "{line}");
    }
    assert!(
        !stderr.contains("of 3s budget; waiting for:"),
        "no text progress lines: {stderr}"
    );
}

#[test]
fn a_body_that_awaits_the_report_may_still_finish_its_work_after_it() {
    let run = run("report-then-work", &[]);
    assert!(
        run.stderr.contains("after the report: clean true"),
        "the body ran past its wait for the report:\n{}",
        run.stderr
    );
    assert_eq!(run.code, Some(1), "its error counts: {}", run.stderr);
    assert!(
        run.stderr
            .contains("Error: \"could not archive the report\""),
        "{}",
        run.stderr
    );
}

#[test]
fn sigint_shuts_down_too() {
    let mut program = start("wait-signal", &[]);
    program.wait_for("ready: wait-signal");
    program.signal(libc::SIGINT);
    let (code, stderr) = program.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("shutdown: SIGINT received"), "{stderr}");
}

#[test]
fn a_body_that_ignores_shutdown_is_dropped_after_its_stop_timeout() {
    let mut program = start("ignore-signal", &[]);
    program.wait_for("ready: ignore-signal");
    let signalled = Instant::now();
    program.signal(libc::SIGTERM);
    let (code, exited, stderr) = program.finish_timed();
    let took = exited - signalled;
    lifecycle_tests::record_fault_time(took);
    assert_eq!(code, Some(1), "{stderr}");
    // Its stop timeout, then the report; 160 ms for the promise (100 ms) and the measuring.
    assert!(
        took >= Duration::from_millis(300) && took <= Duration::from_millis(460),
        "took {took:?} from SIGTERM to exit:\n{stderr}"
    );
    assert!(
        stderr
            .contains("ABORTED   task main — ignored shutdown for its whole stop timeout of 300ms"),
        "{stderr}"
    );
}

#[test]
fn a_second_signal_during_shutdown_exits_130_with_what_is_known() {
    // A long drain keeps shutdown busy.
    let mut program = start(
        "wait-signal",
        &[
            ("LIFECYCLE_DRAIN", "20s"),
            ("LIFECYCLE_SHUTDOWN_TIMEOUT", "25s"),
        ],
    );
    program.wait_for("ready: wait-signal");
    program.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    program.signal(libc::SIGTERM);
    let (code, stderr) = program.finish();
    let took = second.elapsed();
    assert_eq!(code, Some(130), "{stderr}");
    lifecycle_tests::record_fault_time(took);
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after the second signal"
    );
    assert!(
        stderr.contains("SIGTERM during shutdown: exiting now with code 130."),
        "{stderr}"
    );
    // What is known: the drain cut short, and the tasks that had not been told to stop yet.
    assert!(
        stderr.contains("SKIPPED   drain drain — cut short: the process exited during the drain"),
        "{stderr}"
    );
    for task in ["main", "server", "ticker"] {
        assert!(
            stderr.contains(&format!(
                "TIMED OUT task {task} — did not finish: still running when the process exited"
            )),
            "{task}: {stderr}"
        );
    }
}

#[test]
fn budget_and_drain_come_from_the_environment() {
    let run = run(
        "clean",
        &[
            ("LIFECYCLE_SHUTDOWN_TIMEOUT", "7s"),
            ("LIFECYCLE_DRAIN", "150ms"),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("of 7s budget"), "{}", run.stderr);
    assert!(run.stderr.contains("drained   drain"), "{}", run.stderr);
}

#[test]
fn a_bad_environment_value_stops_the_program_at_start_naming_variable_and_value() {
    let run = run("clean", &[("LIFECYCLE_SHUTDOWN_TIMEOUT", "banana")]);
    lifecycle_tests::record_fault_time(run.took);
    assert_refused_at_start(
        &run,
        "environment variable LIFECYCLE_SHUTDOWN_TIMEOUT=\"banana\" is not a duration",
    );
    assert!(
        run.stderr.contains("or unset it to use 3s"),
        "the default named is the attribute's `shutdown_timeout = \"3s\"`: {}",
        run.stderr
    );

    let run = self::run("clean", &[("LIFECYCLE_DRAIN", "5 parsecs")]);
    assert_refused_at_start(&run, "LIFECYCLE_DRAIN=\"5 parsecs\"");
    assert!(
        run.stderr.contains("write it like \"30s\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_zero_budget_is_refused_at_start_naming_where_it_came_from() {
    let run = run("clean", &[("LIFECYCLE_SHUTDOWN_TIMEOUT", "0s")]);
    lifecycle_tests::record_fault_time(run.took);
    assert_refused_at_start(
        &run,
        "LIFECYCLE_SHUTDOWN_TIMEOUT=0s leaves shutdown no time",
    );
}

#[test]
fn a_drain_that_takes_the_whole_budget_is_refused_at_start() {
    // The drain from the environment against the attribute's budget.
    let run = run("clean", &[("LIFECYCLE_DRAIN", "3s")]);
    lifecycle_tests::record_fault_time(run.took);
    assert_refused_at_start(
        &run,
        "LIFECYCLE_DRAIN=3s takes the whole shutdown budget (shutdown_timeout = \"3s\")",
    );

    // Both from the environment; a drain just under the budget is accepted.
    let run = self::run(
        "clean",
        &[
            ("LIFECYCLE_SHUTDOWN_TIMEOUT", "1s"),
            ("LIFECYCLE_DRAIN", "5s"),
        ],
    );
    assert_refused_at_start(
        &run,
        "LIFECYCLE_DRAIN=5s takes the whole shutdown budget (LIFECYCLE_SHUTDOWN_TIMEOUT=1s)",
    );
    let run = self::run(
        "clean",
        &[
            ("LIFECYCLE_SHUTDOWN_TIMEOUT", "1s"),
            ("LIFECYCLE_DRAIN", "900ms"),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn a_main_that_returns_at_once_does_not_call_the_runtimes_own_threads_leaked() {
    // Returning before every worker thread has started used to race the lingering-thread scan.
    for _ in 0..20 {
        let program = Program::start(
            Command::new(env!("CARGO_BIN_EXE_lifecycle-fixture-instant")),
            &[],
        );
        let (code, stderr) = program.finish();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("LEAKED"), "{stderr}");
    }
}
