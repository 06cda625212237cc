//! What `#[lifecycle_runtime::main]` and `#[lifecycle_runtime::test]` expand to: build the
//! runtime, run the body (as the main task, or as the test), answer signals, run shutdown, print
//! the report, choose the exit code or the test's verdict.

use std::fmt::Debug;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{DRAIN_VAR, SHUTDOWN_TIMEOUT_VAR, env_duration};
use crate::coordinator::Coordinator;
#[cfg(unix)]
use crate::coordinator::{HARD_GRACE, TEST_HARD_GRACE, Watch, claim_exit};
use crate::defaults::{DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TEST_SHUTDOWN_TIMEOUT};
use crate::report::{Entry, Outcome, ReportFormat, ShutdownReason, ShutdownReport};
#[cfg(unix)]
use crate::util::write_stderr;
use crate::util::{debug_guarded, format_duration};
use crate::workers::{TaskError, TaskName, WorkerKind, WorkerMeta};

/// Exit code when a second signal arrives during shutdown (128 + SIGINT, as shells report it).
pub const EXIT_SECOND_SIGNAL: u8 = 130;
/// Exit code when the body failed or shutdown was not clean.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when the program could not start (bad configuration, no runtime).
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Exit code of a test process whose test's shutdown wedged (what a failed test run exits with).
#[cfg(unix)]
const EXIT_TEST_WEDGED: u8 = 101;

/// How long printing the finished report may take: a stderr nobody reads loses the rest.
#[cfg(unix)]
const REPORT_WRITE_LIMIT: Duration = Duration::from_secs(1);

/// Which tokio scheduler `main` runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `Builder::new_multi_thread`.
    MultiThread,
    /// `Builder::new_current_thread`.
    CurrentThread,
}

/// Everything `#[main(...)]` said.
#[derive(Clone, Copy, Debug)]
pub struct MainSpec {
    /// `shutdown_timeout = "..."`; `LIFECYCLE_SHUTDOWN_TIMEOUT` overrides it.
    pub shutdown_timeout: Option<Duration>,
    /// `drain = "..."`; `LIFECYCLE_DRAIN` overrides it.
    pub drain: Option<Duration>,
    /// How long the body may take to return after shutdown is triggered before it is dropped.
    pub stop_timeout: Duration,
    /// `ready = "at_start"`: the program is ready as soon as the body starts; otherwise when it
    /// calls [`mark_ready`](crate::mark_ready).
    pub ready_at_start: bool,
    /// `report = "..."`; `LIFECYCLE_REPORT` overrides it.
    pub report: ReportFormat,
    /// `worker_threads = n`.
    pub worker_threads: Option<usize>,
    /// `flavor = "..."`.
    pub flavor: Flavor,
}

/// What the body of `main` may return: `()` or `Result<(), E: Debug>` (as `std` allows).
#[diagnostic::on_unimplemented(
    message = "`#[lifecycle_runtime::main]` needs `main` to return `()` or `Result<(), E>` where `E: Debug`, not `{Self}`",
    label = "`main` returns `{Self}`"
)]
pub trait MainOutput {
    /// `Err` carries the error formatted with `{:?}`.
    fn into_main_result(self) -> Result<(), String>;
}

impl MainOutput for () {
    fn into_main_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> MainOutput for Result<(), E> {
    fn into_main_result(self) -> Result<(), String> {
        self.map_err(|error| debug_guarded(&error))
    }
}

/// Runs `body` as the program's main task under the global coordinator. Returns the exit code:
/// 0 when the body succeeded and shutdown was clean, 1 otherwise, 2 when it could not start.
///
/// The body runs on the thread that calls this (in the runtime's `block_on`), as
/// `#[tokio::main]`'s does, so it need not be `Send`: it may hold an `Rc` or `std::env::Args`
/// across an `.await`. It is still the tracked worker `main`, told to stop, aborted at its stop
/// timeout and reported like any task.
pub fn run_main<O, F>(spec: MainSpec, body: F) -> ExitCode
where
    O: MainOutput,
    F: Future<Output = O>,
{
    match run_main_inner(spec, body) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn run_main_inner<O, F>(spec: MainSpec, body: F) -> Result<u8, String>
where
    O: MainOutput,
    F: Future<Output = O>,
{
    let (budget, drain) = budget_and_drain(spec)?;
    let format = ReportFormat::from_env(spec.report)?;
    #[cfg(all(feature = "systemd", unix))]
    crate::systemd::enable();
    let coordinator = Coordinator::global();
    coordinator.set_shutdown_timeout(budget);
    coordinator.set_drain(drain);

    // Before the runtime: signals are heard, and the deadline held, by a thread that needs none.
    #[cfg(unix)]
    coordinator
        .start_watchdog(Watch {
            signals: true,
            grace: HARD_GRACE,
            test: None,
            timed_out_code: EXIT_FAILURE,
            second_signal_code: EXIT_SECOND_SIGNAL,
            format,
        })
        .map_err(|error| format!("cannot start the shutdown watchdog: {error}"))?;

    let runtime = runtime_builder(spec.flavor, spec.worker_threads)
        .on_thread_start(crate::os_threads::mark_runtime_thread)
        .build()
        .map_err(|error| format!("cannot start the tokio runtime: {error}"))?;
    let (code, report, main_error) = runtime.block_on(async {
        coordinator.remember_runtime();
        #[cfg(all(feature = "systemd", unix))]
        crate::systemd::start_watchdog_pings(&tokio::runtime::Handle::current());
        if format == ReportFormat::Tracing {
            spawn_progress_events(coordinator.clone(), budget);
        }
        #[cfg(not(unix))]
        listen_for_signals(coordinator.clone())?;

        if spec.ready_at_start {
            coordinator.mark_ready();
        }
        let meta = WorkerMeta::new(
            TaskName::from("main"),
            WorkerKind::Main,
            spec.stop_timeout,
            None,
        );
        // Polled here, beside the wait for the report: the body need not be `Send`. Boxed, so that
        // a body still there at the end (it ignored its abort in synchronous code) is forgotten,
        // not dropped: its destructor could block the exit.
        let mut main_task = Box::pin(
            coordinator.local_worker(meta, async move { Ok(body.await.into_main_result()) }),
        );
        let mut body_result = None;
        let report = {
            let report = coordinator.report();
            tokio::pin!(report);
            loop {
                tokio::select! {
                    biased;
                    result = &mut main_task, if body_result.is_none() => {
                        let reason = match &result {
                            Ok(Ok(())) => Some(ShutdownReason::MainReturned),
                            Ok(Err(error)) => Some(ShutdownReason::MainFailed {
                                error: error.clone(),
                            }),
                            Err(TaskError::Panicked { message, .. }) => {
                                Some(ShutdownReason::MainFailed {
                                    error: format!("panicked: {message}"),
                                })
                            }
                            Err(_) => None,
                        };
                        if let Some(reason) = reason {
                            coordinator.start_shutdown(reason);
                        }
                        body_result = Some(result);
                    }
                    report = &mut report => break report,
                }
            }
        };
        if body_result.is_none() {
            // A body that awaited the report itself (`shutdown().await`) was not waited for: it
            // may still have work after it (writing the report somewhere, flushing a log). It
            // gets its stop timeout to finish; an aborted one is dropped at this poll.
            if let Ok(result) = tokio::time::timeout(spec.stop_timeout, &mut main_task).await {
                body_result = Some(result);
            }
        }
        if body_result.is_none() {
            std::mem::forget(main_task);
        }
        // By now the body has returned or was aborted, unless it is stuck in synchronous code, which
        // the report already names.
        let main_error = match body_result {
            Some(Ok(Err(error))) => Some(error),
            Some(Err(TaskError::Panicked { message, .. })) => {
                Some(format!("main panicked: {message}"))
            }
            // Returned, or aborted or stuck: the report says so and is not clean.
            _ => None,
        };
        let body_ok = main_error.is_none();
        // A critical task failing is a failure of the program, however cleanly it then stopped.
        let critical_failed = matches!(report.reason(), ShutdownReason::CriticalTaskFailed { .. });
        let code = if body_ok && report.is_clean() && !critical_failed {
            0
        } else {
            EXIT_FAILURE
        };
        Ok::<(u8, ShutdownReport, Option<String>), String>((code, report, main_error))
    })?;
    // Claimed first: a watchdog ending the process meanwhile gives its own report instead.
    print_report(code, || format.render(&report, main_error.as_deref(), code));
    // No managed child outlives the program, whatever became of its close.
    crate::resources::kill_all_now();
    // The runtime is not dropped: that would drop every task still there on this thread, and one
    // whose destructor blocks would hold the exit. The report named what was left; the process
    // ends now.
    std::mem::forget(runtime);
    Ok(code)
}

/// In the tracing form, the progress of a long shutdown as events, every second, from a task on
/// the runtime (the watchdog thread never calls a subscriber, whose writer could block it).
fn spawn_progress_events(coordinator: Coordinator, budget: Duration) {
    drop(tokio::spawn(async move {
        coordinator.shutdown_started().await;
        let started = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if coordinator.readiness() == crate::Readiness::Stopped {
                return;
            }
            let waiting_for = coordinator.pending_folded(crate::report::PROGRESS_NAMES);
            let _ = ReportFormat::Tracing.progress(started.elapsed(), budget, &waiting_for);
        }
    }));
}

/// Gives the finished report (`render` writes tracing events itself, or returns the text to
/// write). A closed or full stderr loses the text, never the exit code.
#[cfg(unix)]
fn print_report(code: u8, render: impl FnOnce() -> Option<String>) {
    if !claim_exit(code) {
        // The watchdog is ending the process (a second signal, or the deadline) with its own
        // report: let it.
        loop {
            std::thread::park();
        }
    }
    if let Some(text) = render() {
        write_stderr(&text, REPORT_WRITE_LIMIT);
    }
}

#[cfg(not(unix))]
fn print_report(_code: u8, render: impl FnOnce() -> Option<String>) {
    use std::io::Write as _;
    if let Some(text) = render() {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// Where there are no Unix signals: ctrl-c starts shutdown, a second one exits at once.
#[cfg(not(unix))]
fn listen_for_signals(coordinator: Coordinator) -> Result<(), String> {
    tokio::spawn(async move {
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            if coordinator.is_shutting_down() {
                crate::resources::kill_all_now();
                std::process::exit(i32::from(EXIT_SECOND_SIGNAL));
            }
            coordinator.start_shutdown(ShutdownReason::Signal { name: "ctrl-c" });
        }
    });
    Ok(())
}

/// The budget and the drain: the environment over the attribute over the defaults. A budget of
/// zero, or a drain that leaves no time to stop anything, is refused before the program starts:
/// every shutdown would abort everything.
fn budget_and_drain(spec: MainSpec) -> Result<(Duration, Duration), String> {
    // What applies when the variable is unset, for its error message.
    let default_budget = spec.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    let default_drain = spec.drain.unwrap_or(Duration::ZERO);
    let from_env_budget =
        env_duration(SHUTDOWN_TIMEOUT_VAR, default_budget).map_err(|error| error.to_string())?;
    let from_env_drain =
        env_duration(DRAIN_VAR, default_drain).map_err(|error| error.to_string())?;
    let budget = from_env_budget.unwrap_or(default_budget);
    let drain = from_env_drain.unwrap_or(default_drain);
    // Zero as the user would write it, not as "0µs".
    let shown = |duration: Duration| match duration.is_zero() {
        true => "0s".to_owned(),
        false => format_duration(duration),
    };
    let budget_source = match from_env_budget {
        Some(_) => format!("{SHUTDOWN_TIMEOUT_VAR}={}", shown(budget)),
        None => format!("shutdown_timeout = \"{}\"", shown(budget)),
    };
    if budget.is_zero() {
        return Err(format!(
            "{budget_source} leaves shutdown no time: every task would be aborted at once and nothing closed; give it a budget such as 30s"
        ));
    }
    if drain >= budget {
        let drain_source = match from_env_drain {
            Some(_) => format!("{DRAIN_VAR}={}", shown(drain)),
            None => format!("drain = \"{}\"", shown(drain)),
        };
        return Err(format!(
            "{drain_source} takes the whole shutdown budget ({budget_source}): every shutdown would abort every task and close nothing in time; make the drain shorter than the budget, leaving time to stop and close"
        ));
    }
    Ok((budget, drain))
}

/// A tokio runtime builder of the flavor asked for, with every driver enabled.
fn runtime_builder(flavor: Flavor, worker_threads: Option<usize>) -> tokio::runtime::Builder {
    let mut builder = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = worker_threads {
                builder.worker_threads(threads);
            }
            builder
        }
    };
    builder.enable_all();
    builder
}

/// Everything `#[lifecycle_runtime::test(...)]` said.
#[derive(Clone, Copy, Debug)]
pub struct TestSpec {
    /// The test fn's name.
    pub name: &'static str,
    /// `flavor = "..."` (current thread by default, as `#[tokio::test]`).
    pub flavor: Flavor,
    /// `worker_threads = n`.
    pub worker_threads: Option<usize>,
    /// `start_paused = true`: tokio's paused clock (needs the `test-util` feature).
    pub start_paused: bool,
    /// `shutdown_timeout = "..."`; [`DEFAULT_TEST_SHUTDOWN_TIMEOUT`] otherwise.
    pub shutdown_timeout: Option<Duration>,
}

/// Runs a test body under a coordinator of its own, then shuts it down and fails the test,
/// naming the culprit, when a task ignored shutdown and was aborted, a resource's close failed or
/// timed out, or a thread the test started is still alive.
#[track_caller]
pub fn run_test<O, F>(spec: TestSpec, body: F)
where
    O: MainOutput,
    F: Future<Output = O>,
{
    let coordinator = Coordinator::builder()
        .scan_os_threads(false)
        .shutdown_timeout(
            spec.shutdown_timeout
                .unwrap_or(DEFAULT_TEST_SHUTDOWN_TIMEOUT),
        )
        .build();
    // A shutdown that wedges the test's runtime (a close or a destructor blocking its only
    // thread) ends the test process at the test's budget plus a grace, with what is known,
    // instead of hanging the run.
    #[cfg(unix)]
    if let Err(error) = coordinator.start_watchdog(Watch {
        signals: false,
        grace: TEST_HARD_GRACE,
        test: Some(spec.name),
        timed_out_code: EXIT_TEST_WEDGED,
        second_signal_code: EXIT_TEST_WEDGED,
        format: ReportFormat::Text,
    }) {
        panic!(
            "test `{}`: cannot start its shutdown watchdog: {error}",
            spec.name
        );
    }
    let mut builder = runtime_builder(spec.flavor, spec.worker_threads);
    if spec.start_paused {
        pause_clock(&mut builder, spec.name);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => panic!(
            "test `{}`: cannot start the tokio runtime: {error}",
            spec.name
        ),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(coordinator.scope(body))
    }));
    let report = runtime.block_on(coordinator.shutdown_with(ShutdownReason::TestFinished));
    // What would not stop was named in the report; do not wait for it.
    runtime.shutdown_background();
    let output = match outcome {
        Ok(output) => output,
        Err(panic) => {
            if !report.is_clean() {
                eprint!("{report}");
            }
            std::panic::resume_unwind(panic);
        }
    };
    if let Err(error) = output.into_main_result() {
        panic!("test `{}` returned an error: {error}", spec.name);
    }
    if !report.is_clean() {
        let culprits: Vec<String> = report.problems().map(describe_problem).collect();
        panic!(
            "test `{}` did not shut down cleanly: {}\n{report}",
            spec.name,
            culprits.join("; ")
        );
    }
}

/// One line about one unclean report entry: what, which, and why.
fn describe_problem(entry: &Entry) -> String {
    let what = match entry.outcome() {
        Outcome::Aborted => "ignored shutdown and was aborted".to_owned(),
        Outcome::Leaked => "is still running".to_owned(),
        Outcome::TimedOut => "timed out".to_owned(),
        Outcome::Panicked => "panicked".to_owned(),
        Outcome::Error(message) => format!("failed: {message}"),
        Outcome::Skipped => "was skipped: the shutdown budget ran out".to_owned(),
        Outcome::Stopped | Outcome::Closed | Outcome::Drained => entry.outcome().label().to_owned(),
    };
    let mut line = format!("{} `{}` {what}", entry.kind(), entry.name());
    if let Some(parent) = entry.parent() {
        line = format!("{line} (in `{parent}`)");
    }
    line
}

#[cfg(feature = "test-util")]
fn pause_clock(builder: &mut tokio::runtime::Builder, _test: &str) {
    builder.start_paused(true);
}

#[cfg(not(feature = "test-util"))]
fn pause_clock(_builder: &mut tokio::runtime::Builder, test: &str) {
    panic!(
        "test `{test}` asks for `start_paused = true`, which needs tokio's paused clock: enable lifecycle-runtime's \
         `test-util` feature in your dev-dependencies (`lifecycle-runtime = {{ version = \"...\", features = [\"test-util\"] }}`)"
    );
}
