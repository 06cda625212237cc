//! The hard deadline: an OS thread that needs no runtime. Under `#[main]` it also receives
//! SIGINT and SIGTERM (their handlers write the signal's number to a pipe it waits on): the first
//! starts shutdown, a second ends the process at once. When shutdown started and no report came
//! within the budget plus [`HARD_GRACE`], it ends the process itself. Either way it first kills
//! the managed children's process groups, then writes what is known (the entries of the steps
//! done, and everything still pending as "did not finish"), then exits with the program's code.
//! Blocked or spinning runtime workers cannot stop it: it shares nothing with them but a few
//! short locks.
//!
//! Who exits is decided once per process ([`claim_exit`]): the main thread claims it before it
//! prints the finished report; the watchdog claims it before it writes its own. A watchdog that
//! finds the main thread printing gives it [`PRINT_GRACE`], then exits with the main thread's
//! code.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Coordinator;
use crate::report::{Entry, EntryKind, Outcome, ReportFormat, ShutdownReason, ShutdownReport};
use crate::util::{after_std, format_duration, write_stderr, write_stderr_unless_busy};
use crate::workers::Phase;

/// How long after the budget the watchdog ends a program whose shutdown has not reported.
pub(crate) const HARD_GRACE: Duration = Duration::from_millis(50);

/// The same for a test's coordinator: more, since ending a test ends every test of its process.
pub(crate) const TEST_HARD_GRACE: Duration = Duration::from_secs(1);

/// How long the main thread may take to print a finished report once the deadline has passed.
const PRINT_GRACE: Duration = Duration::from_secs(2);

/// How long the watchdog spends writing its own report: a full stderr loses the rest.
const WRITE_LIMIT: Duration = Duration::from_millis(200);

/// How often the watchdog nudges the runtime while shutdown is under way (see [`nudge`]).
const NUDGE_EVERY: Duration = Duration::from_millis(10);

/// How often a long shutdown says how far it has come.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The byte that only wakes the watchdog (signal numbers are never 0).
const WAKE: u8 = 0;

/// Who ends the process: nobody yet, the main thread (with its code), or the watchdog.
static EXIT: AtomicU32 = AtomicU32::new(UNCLAIMED);
const UNCLAIMED: u32 = 0;
const BY_MAIN: u32 = 1 << 8;
const BY_WATCHDOG: u32 = 2 << 8;

/// Claims the exit for the main thread, which will exit with `code` once it printed the report.
/// False when the watchdog already claimed it (it is ending the process).
pub(crate) fn claim_exit(code: u8) -> bool {
    EXIT.compare_exchange(
        UNCLAIMED,
        BY_MAIN | u32::from(code),
        Ordering::AcqRel,
        Ordering::Acquire,
    )
    .is_ok()
}

/// Claims the exit for the watchdog; `Err` with the main thread's code if it claimed first.
fn claim_for_watchdog() -> Result<(), u8> {
    match EXIT.compare_exchange(UNCLAIMED, BY_WATCHDOG, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        // Only a watchdog claims `BY_WATCHDOG`, and a process has one.
        Err(claimed) => Err((claimed & 0xff) as u8),
    }
}

/// The write end of a watchdog's pipe: one byte wakes it.
pub(super) struct Wake {
    fd: OwnedFd,
}

impl Wake {
    /// Wakes the watchdog to look at the coordinator again (shutdown started, or reported).
    pub(super) fn wake(&self) {
        write_byte(self.fd.as_raw_fd(), WAKE);
    }
}

/// What a watchdog does besides the deadline, and the exit codes it uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch {
    /// Receive SIGINT and SIGTERM (only one watchdog per process may). A watchdog that does not
    /// ends with its coordinator's report; one that does lives as long as the process.
    pub(crate) signals: bool,
    /// How long after the budget the process is ended.
    pub(crate) grace: Duration,
    /// The test whose coordinator this is, for the message; `None` for the program's.
    pub(crate) test: Option<&'static str>,
    /// The code when the deadline passes without a report.
    pub(crate) timed_out_code: u8,
    /// The code at a second signal.
    pub(crate) second_signal_code: u8,
    /// How the report it writes, and the progress of a long shutdown, are given.
    pub(crate) format: ReportFormat,
}

impl Coordinator {
    /// Starts this coordinator's watchdog thread (see the module's documentation).
    ///
    /// # Errors
    ///
    /// When the pipe, the signal handlers or the thread cannot be made.
    pub(crate) fn start_watchdog(&self, watch: Watch) -> io::Result<()> {
        let (read, write) = pipe()?;
        if watch.signals {
            let fd = write.as_raw_fd();
            for signal in [libc::SIGINT, libc::SIGTERM] {
                // SAFETY: the action only calls write(2) on a descriptor that stays open for the
                // life of the process (the `Wake` that owns it is kept in the coordinator's
                // state, which the global coordinator never drops): async-signal-safe.
                unsafe {
                    signal_hook_registry::register(signal, move || {
                        write_byte(fd, u8::try_from(signal).unwrap_or(u8::MAX));
                    })?;
                }
            }
        }
        if self.state.watchdog.set(Wake { fd: write }).is_err() {
            return Err(io::Error::other("this coordinator already has a watchdog"));
        }
        let coordinator = self.clone();
        std::thread::Builder::new()
            .name("lifecycle-watchdog".to_owned())
            .spawn(move || {
                // Not a thread of the program's: the report's look for lingering threads skips it.
                crate::os_threads::mark_runtime_thread();
                coordinator.watch(&read, watch);
            })?;
        // A shutdown that started before the thread could hear of it.
        self.wake_watchdog();
        Ok(())
    }

    /// Wakes the watchdog, if there is one.
    pub(super) fn wake_watchdog(&self) {
        if let Some(wake) = self.state.watchdog.get() {
            wake.wake();
        }
    }

    /// The watchdog's loop; it only returns by ending the process.
    fn watch(&self, pipe: &OwnedFd, watch: Watch) {
        let mut deadline: Option<Instant> = None;
        // When the next progress line of a long shutdown is due.
        let mut progress_at: Option<Instant> = None;
        loop {
            // While shutdown is under way, wake up often enough to nudge the runtime.
            let wake_at = deadline.map(|at| at.min(after_std(Instant::now(), NUDGE_EVERY)));
            wait_readable(pipe.as_raw_fd(), wake_at);
            if self.state.sequence.has_report() {
                if !watch.signals {
                    return;
                }
            } else if deadline.is_some() {
                self.nudge();
            }
            for signal in read_signals(pipe.as_raw_fd()) {
                let name = signal_name(signal);
                if self.is_shutting_down() {
                    self.exit_now(
                        &format!(
                            "{name} during shutdown: exiting now with code {}.",
                            watch.second_signal_code
                        ),
                        watch.second_signal_code,
                        watch.format,
                    );
                }
                self.start_shutdown(ShutdownReason::Signal { name });
            }
            if deadline.is_none() && self.is_shutting_down() {
                let budget = self.sequence_config().shutdown_timeout;
                deadline = Some(after_std(
                    Instant::now(),
                    budget.saturating_add(watch.grace),
                ));
                progress_at = Some(after_std(Instant::now(), PROGRESS_EVERY));
            }
            if watch.signals
                && progress_at.is_some_and(|at| Instant::now() >= at)
                && !self.state.sequence.has_report()
            {
                progress_at = progress_at.map(|at| after_std(at, PROGRESS_EVERY));
                self.tell_progress(watch.format, watch.grace);
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                let budget = format!(
                    "its budget of {} (+{})",
                    format_duration(self.sequence_config().shutdown_timeout),
                    format_duration(watch.grace)
                );
                let code = watch.timed_out_code;
                let headline = match watch.test {
                    None => format!(
                        "shutdown did not finish within {budget}: exiting now with code {code}."
                    ),
                    Some(test) => format!(
                        "test `{test}` did not shut down within {budget}: ending the test process with code {code}."
                    ),
                };
                self.exit_now(&headline, code, watch.format);
            }
        }
    }

    /// Says how far shutdown has come and what it still waits for. Skipped when the finished
    /// report is being written, so the line never lands inside it. In the tracing form the
    /// events come from a task on the runtime instead (`progress_events`): this thread never
    /// calls a subscriber.
    fn tell_progress(&self, format: ReportFormat, grace: Duration) {
        let elapsed = self.state.start.at().elapsed();
        let budget = self.sequence_config().shutdown_timeout;
        let waiting_for = self.pending_folded(crate::report::PROGRESS_NAMES);
        #[cfg(feature = "systemd")]
        crate::systemd::progress(
            budget.saturating_add(grace).saturating_sub(elapsed),
            &waiting_for,
        );
        #[cfg(not(feature = "systemd"))]
        let _ = grace;
        if format == ReportFormat::Tracing {
            return;
        }
        if let Some(line) = format.progress(elapsed, budget, &waiting_for) {
            write_stderr_unless_busy(&line, WRITE_LIMIT);
        }
    }

    /// Hands the runtime an empty task from outside. A worker that blocks in a task (a close or
    /// a destructor stuck in synchronous code) may leave the others asleep with nobody driving
    /// the timers, and so the shutdown sequence's own deadlines; a task spawned from outside
    /// wakes an idle worker, which then drives them.
    fn nudge(&self) {
        if let Some(runtime) = self.state.runtime.get() {
            drop(runtime.spawn(async {}));
        }
    }

    /// Ends the process: kills the managed children's groups, writes `headline` and what is
    /// known, exits with `code`. If the main thread is printing the finished report, it gets
    /// [`PRINT_GRACE`] to finish and the process exits with its code instead.
    fn exit_now(&self, headline: &str, code: u8, format: ReportFormat) -> ! {
        // Claimed and described before the children are killed: killing them lets a close that
        // waited for them finish, and the sequence could then end and claim the exit (with its
        // own code) or publish a report that calls the killed children closed.
        match claim_for_watchdog() {
            Ok(()) => {
                // The finished report if the sequence made one (the main thread could not print
                // it: a destructor blocks its runtime's only thread), else what is known.
                let published = self.state.sequence.subscribe().borrow().clone();
                let headline = match (&published, headline.starts_with("shutdown did not finish")) {
                    (Some(_), true) => format!(
                        "the shutdown report was made, but the main thread did not print it within the budget (is it blocked in synchronous code?): exiting now with code {code}."
                    ),
                    _ => headline.to_owned(),
                };
                let report = published.unwrap_or_else(|| self.report_so_far().into());
                crate::resources::kill_all_now();
                // Never through `tracing` from this thread: a subscriber's writer may block (a
                // full pipe, a lock held by a stuck thread), and this thread must end the process.
                // In the tracing form, the emergency report is text on stderr.
                let text = match format {
                    ReportFormat::Text | ReportFormat::Tracing => {
                        Some(format!("\n{headline}\n{report}"))
                    }
                    format => format.render(&report, Some(&headline), code),
                };
                if let Some(text) = text {
                    write_stderr(&text, WRITE_LIMIT);
                }
                exit(code)
            }
            Err(main_code) => {
                crate::resources::kill_all_now();
                std::thread::sleep(PRINT_GRACE);
                exit(main_code)
            }
        }
    }

    /// The report of a sequence that has not finished: the entries of the steps done, then
    /// everything still pending (workers folded by name, the resource closing, the resources not
    /// reached).
    pub(crate) fn report_so_far(&self) -> ShutdownReport {
        let started = self.state.start.at();
        let elapsed = started.elapsed();
        let sequence = &self.state.sequence;
        let mut entries = sequence.recorded();
        entries.extend(self.state.workers.take_entries(started));
        entries.extend(self.pending_entries(elapsed));
        let reason = self
            .reason()
            .cloned()
            .unwrap_or(ShutdownReason::MainReturned);
        let budget = self.sequence_config().shutdown_timeout;
        ShutdownReport::new(reason, budget, elapsed, entries, Vec::new())
    }

    /// Entries for what has not finished: workers still registered, folded by kind and name, the
    /// resource being closed, and the resources not reached.
    fn pending_entries(&self, elapsed: Duration) -> Vec<Entry> {
        let unfinished = |name: &str, kind: EntryKind, outcome: Outcome, detail: &str| {
            Entry::new(name, kind, outcome, Duration::ZERO, elapsed)
                .with_detail(Some(detail.to_owned()))
        };
        let mut entries = Vec::new();
        if self.phase() == Phase::Draining {
            entries.push(unfinished(
                "drain",
                EntryKind::Drain,
                Outcome::Skipped,
                "cut short: the process exited during the drain",
            ));
        }
        let mut workers: Vec<Entry> = Vec::new();
        let mut index: HashMap<(EntryKind, String), usize> = HashMap::new();
        self.state.workers.for_each(|worker| {
            let key = (worker.kind().entry_kind(), worker.name().to_string());
            match index.get(&key) {
                Some(&at) => workers[at].absorb(1, elapsed),
                None => {
                    index.insert(key.clone(), workers.len());
                    workers.push(unfinished(
                        &key.1,
                        key.0,
                        Outcome::TimedOut,
                        "did not finish: still running when the process exited",
                    ));
                }
            }
        });
        let resources = &self.state.resources;
        entries.extend(workers);
        if let Some(name) = resources.closing_now() {
            entries.push(unfinished(
                &name,
                EntryKind::Resource,
                Outcome::TimedOut,
                "did not finish closing: still closing when the process exited",
            ));
        }
        for name in resources
            .queued_names()
            .into_iter()
            .chain(resources.open_names())
        {
            entries.push(unfinished(
                &name,
                EntryKind::Resource,
                Outcome::Skipped,
                "not reached: the process exited first",
            ));
        }
        entries
    }
}

/// A pipe whose both ends are non-blocking and closed on exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2(2) writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2(2) just opened both, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes one byte without blocking; a full pipe already holds a byte that wakes the reader.
/// Async-signal-safe: write(2) only, and `errno` as it was.
fn write_byte(fd: RawFd, byte: u8) {
    let errno = io::Error::last_os_error().raw_os_error();
    // SAFETY: one byte from a valid local.
    unsafe {
        libc::write(fd, (&raw const byte).cast(), 1);
    }
    if let Some(errno) = errno {
        set_errno(errno);
    }
}

#[cfg(target_os = "linux")]
fn set_errno(errno: i32) {
    // SAFETY: the calling thread's errno, a valid pointer for its life.
    unsafe { *libc::__errno_location() = errno };
}

#[cfg(not(target_os = "linux"))]
fn set_errno(_errno: i32) {}

/// Waits until the pipe has bytes, or until `deadline`.
fn wait_readable(fd: RawFd, deadline: Option<Instant>) {
    let millis = match deadline {
        None => -1,
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            // Rounded up: waking a moment early would spin until the deadline.
            let millis = left.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX)
        }
    };
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, and the count says one. An interrupted wait just loops.
    unsafe {
        libc::poll(&mut poll, 1, millis);
    }
}

/// The signals waiting in the pipe (wake bytes dropped), oldest first.
fn read_signals(fd: RawFd) -> Vec<u8> {
    let mut signals = Vec::new();
    let mut buffer = [0u8; 64];
    loop {
        // SAFETY: the pointer and length describe `buffer`.
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        let Ok(read @ 1..) = usize::try_from(read) else {
            return signals;
        };
        signals.extend(buffer[..read].iter().copied().filter(|&byte| byte != WAKE));
    }
}

fn signal_name(signal: u8) -> &'static str {
    match i32::from(signal) {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Exits at once: no destructors, no flushing of std's buffers (a full stdout would block).
fn exit(code: u8) -> ! {
    // SAFETY: _exit(2) ends the process; nothing runs after it.
    unsafe { libc::_exit(i32::from(code)) }
}
