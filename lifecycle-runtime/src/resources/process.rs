//! Subprocesses that stop with the program: each runs in its own process group, and closing it
//! sends SIGTERM to the whole group, waits, then SIGKILL. Nothing it started outlives it: a
//! descendant that left the group (`setsid`, a daemon's double fork) is found by a tag in its
//! environment, killed, and named in the report.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::{Close, CloseError};
use crate::defaults::DEFAULT_TERM_TIMEOUT;
use crate::util::{Backoff, after, format_duration, lock};

/// How long to wait for the group to be gone after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// The environment variable each managed child (and so, unless it clears its environment, each
/// of its descendants) carries: `<our pid>.<child's number>`.
const TAG_VAR: &str = "LIFECYCLE_MANAGED_CHILD";

/// Numbers the children of this process, for their tags.
static NEXT_CHILD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Process groups of managed children that may still run: the ones a program exiting at once
/// (a second signal) must not leave behind.
static LIVE_GROUPS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// SIGKILLs every managed child's process group, and every descendant of a managed child that
/// left its group. For exits that cannot wait for a proper close.
pub(crate) fn kill_all_now() {
    let groups = std::mem::take(&mut *lock(&LIVE_GROUPS));
    for group in groups {
        if let Ok(group) = i32::try_from(group) {
            // SAFETY: killpg(2) has no memory effects.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
    }
    for escaped in tagged_processes(&format!("{}.", std::process::id())) {
        kill_process(escaped.pid);
    }
}

fn forget_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid {
        lock(&LIVE_GROUPS).retain(|group| *group != pgid);
    }
}

/// A child process in its own process group, registered with the coordinator like any resource.
///
/// At shutdown (or [`Managed::close`]) the whole group gets SIGTERM; whatever is still running
/// after the term timeout gets SIGKILL, and the close reports it as an error. Dropping the last
/// handle of a child that is still running kills its group too.
///
/// [`Managed::close`]: crate::Managed::close
///
/// ```no_run
/// use std::time::Duration;
/// use lifecycle_runtime::ManagedChild;
///
/// # async fn run() -> std::io::Result<()> {
/// let mut command = tokio::process::Command::new("redis-server");
/// command.arg("--port").arg("7000");
/// let redis = ManagedChild::builder("redis", command)
///     .term_timeout(Duration::from_secs(5))
///     .spawn()?;
/// println!("redis runs as pid {:?}", redis.id());
/// # Ok(())
/// # }
/// ```
pub struct ManagedChild {
    name: String,
    pid: Option<u32>,
    term_timeout: Duration,
    child: Mutex<Child>,
    /// Set once the whole group is known to be gone: its id may then be reused by another
    /// process group, so it is never signalled again.
    gone: AtomicBool,
    /// The value of [`TAG_VAR`] it and its descendants carry.
    tag: String,
}

impl fmt::Debug for ManagedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedChild")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("term_timeout", &self.term_timeout)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// Configures a [`ManagedChild`] before it starts.
#[derive(Debug)]
pub struct ManagedChildBuilder {
    name: String,
    command: Command,
    term_timeout: Duration,
}

impl ManagedChildBuilder {
    /// How long the group gets to exit after SIGTERM before SIGKILL. Default:
    /// [`DEFAULT_TERM_TIMEOUT`].
    pub fn term_timeout(mut self, timeout: Duration) -> Self {
        self.term_timeout = timeout;
        self
    }

    /// Makes this process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`, for the whole
    /// process, from now on): descendants whose parent exits (a daemon's double fork, `setsid`
    /// and exit) are re-parented to this process instead of to init, and the ones shutdown kills
    /// are reaped here. Useful in a container whose init does not reap. Off by default: a
    /// subreaper inherits every orphan of every child, and the ones this crate does not kill are
    /// left for the program to reap.
    ///
    /// Escaped descendants are found and killed either way, by the tag each managed child's
    /// environment carries (`LIFECYCLE_MANAGED_CHILD`), unless they clear their environment.
    pub fn subreaper(self, on: bool) -> Self {
        if on {
            become_subreaper();
        }
        self
    }

    /// Starts the process in a new process group. (Registering it is `spawn`'s part, in
    /// `coordinator/manage.rs`, since it needs the current coordinator.)
    pub(crate) fn start(mut self) -> io::Result<ManagedChild> {
        #[cfg(unix)]
        self.command.process_group(0);
        let tag = format!(
            "{}.{}",
            std::process::id(),
            NEXT_CHILD.fetch_add(1, Ordering::Relaxed)
        );
        self.command.env(TAG_VAR, &tag);
        let child = self.command.spawn().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot start child process `{}`: {error}", self.name),
            )
        })?;
        let pid = child.id();
        if let Some(pid) = pid {
            lock(&LIVE_GROUPS).push(pid);
        }
        tracing::info!(child = %self.name, pid, "child process started");
        Ok(ManagedChild {
            name: self.name,
            pid,
            term_timeout: self.term_timeout,
            child: Mutex::new(child),
            gone: AtomicBool::new(false),
            tag,
        })
    }
}

impl ManagedChild {
    /// Configures a managed child before starting it.
    pub fn builder(name: impl Into<String>, command: Command) -> ManagedChildBuilder {
        ManagedChildBuilder {
            name: name.into(),
            command,
            term_timeout: DEFAULT_TERM_TIMEOUT,
        }
    }

    /// The child's name in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id (also its process group id), if it started.
    pub fn id(&self) -> Option<u32> {
        self.pid
    }

    /// Waits for the child to exit by itself.
    pub async fn wait(&self) -> io::Result<ExitStatus> {
        self.child.lock().await.wait().await
    }

    /// Whether the child has exited.
    pub async fn has_exited(&self) -> bool {
        matches!(self.child.lock().await.try_wait(), Ok(Some(_)))
    }

    /// Sends `signal` to the child's whole process group. Returns false when the group is gone.
    fn signal_group(&self, signal: i32) -> bool {
        if self.gone.load(Ordering::Acquire) {
            return false;
        }
        match self.pid.and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: killpg(2) has no memory effects; the group id is the child's pid, which
            // `process_group(0)` made a group leader.
            Some(group) => unsafe { libc::killpg(group, signal) == 0 },
            None => false,
        }
    }

    /// Whether any process of the child's group is still running. Zombies (exited, waiting for a
    /// parent to reap them) do not count: after their parent was killed they wait for init.
    fn group_alive(&self) -> bool {
        if self.gone.load(Ordering::Acquire) {
            return false;
        }
        match self.pid {
            Some(pgid) => group_running(pgid),
            None => false,
        }
    }

    /// SIGTERM to the group, then SIGKILL after the term timeout; `Err` says what had to be done.
    async fn close_group(&self) -> Result<(), String> {
        let mut child = self.child.lock().await;
        if matches!(child.try_wait(), Ok(Some(_))) && !self.group_alive() {
            self.gone.store(true, Ordering::Release);
            forget_group(self.pid);
            return Ok(());
        }
        self.signal_group(libc::SIGTERM);
        if self.wait_group_gone(&mut child, self.term_timeout).await {
            tracing::info!(child = %self.name, "child process exited after SIGTERM");
            return Ok(());
        }
        self.signal_group(libc::SIGKILL);
        let gone = self.wait_group_gone(&mut child, KILL_WAIT).await;
        tracing::warn!(child = %self.name, "child process ignored SIGTERM and was killed");
        let mut message = format!(
            "child process `{}` did not exit within {} of SIGTERM; killed its process group with SIGKILL",
            self.name,
            format_duration(self.term_timeout)
        );
        if !gone {
            message.push_str(" (and it was still there a second later)");
        }
        Err(message)
    }

    /// Kills the descendants that left the child's process group and still run; returns them.
    fn kill_escaped(&self) -> Vec<Tagged> {
        let escaped = tagged_processes(&self.tag);
        for process in &escaped {
            tracing::warn!(child = %self.name, pid = process.pid, command = %process.command, "a descendant left the child's process group; killing it");
            kill_process(process.pid);
        }
        escaped
    }

    /// Waits until the leader exited and the group is empty, up to `limit`. True when all gone.
    async fn wait_group_gone(&self, child: &mut Child, limit: Duration) -> bool {
        let deadline = after(tokio::time::Instant::now(), limit);
        if tokio::time::timeout_at(deadline, child.wait())
            .await
            .is_err()
        {
            return false;
        }
        // The leader is reaped; its own children may still be exiting.
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
        while self.group_alive() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            backoff.pause().await;
        }
        self.gone.store(true, Ordering::Release);
        forget_group(self.pid);
        true
    }
}

impl Close for ManagedChild {
    async fn close(&self) -> Result<(), CloseError> {
        let group = self.close_group().await;
        // What left the group is found once the group is gone (a daemonizing parent has exited).
        let escaped = self.kill_escaped();
        match (group, escaped.is_empty()) {
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err(escaped_message(&self.name, &escaped).into()),
            (Err(message), true) => Err(message.into()),
            (Err(message), false) => {
                Err(format!("{message}; {}", escaped_message(&self.name, &escaped)).into())
            }
        }
    }

    fn close_timeout(&self) -> Duration {
        self.term_timeout
            .saturating_add(KILL_WAIT)
            .saturating_add(Duration::from_millis(250))
    }

    fn close_name(&self) -> Cow<'static, str> {
        Cow::Owned(self.name.clone())
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        // Last handle gone while the child still runs: nothing could close it any more.
        if matches!(self.child.get_mut().try_wait(), Ok(Some(_))) && !self.group_alive() {
            return;
        }
        if self.signal_group(libc::SIGKILL) {
            tracing::warn!(child = %self.name, "managed child dropped while running; killed its process group");
        }
        forget_group(self.pid);
    }
}

/// `PR_SET_CHILD_SUBREAPER` for this process; a warning where the OS has no such thing.
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no
        // memory of ours.
        let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if result != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot become a child subreaper");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::warn!("child subreapers exist on Linux only; escaped descendants re-parent to init");
}

/// A running process carrying a managed child's tag.
#[derive(Debug)]
struct Tagged {
    pid: i32,
    command: String,
}

/// Running processes (not zombies) whose [`TAG_VAR`] is `tag`, or starts with it when `tag` ends
/// with a dot (every child of this process). Reads `/proc`: empty where there is none, or for
/// processes whose environment this user cannot read.
fn tagged_processes(tag: &str) -> Vec<Tagged> {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = format!("{TAG_VAR}={tag}");
    let prefix = tag.ends_with('.');
    processes
        .filter_map(Result::ok)
        .filter_map(|process| {
            let pid: i32 = process.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(process.path().join("environ")).ok()?;
            let tagged = environ.split(|byte| *byte == 0).any(|variable| {
                if prefix {
                    variable.starts_with(wanted.as_bytes())
                } else {
                    variable == wanted.as_bytes()
                }
            });
            if !tagged {
                return None;
            }
            let stat = std::fs::read_to_string(process.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(") ")?;
            let state = rest.split_whitespace().next()?;
            if state == "Z" || state == "X" {
                return None;
            }
            let command = head
                .split_once(" (")
                .map_or("", |(_, name)| name)
                .to_owned();
            Some(Tagged { pid, command })
        })
        .collect()
}

/// SIGKILLs one process and waits (up to 100 ms) until it is gone: reaped if it is this
/// process's child (re-parented to a subreaper), so it does not linger as a zombie; otherwise
/// until it is dead (SIGKILL takes effect asynchronously: the process runs on until the kernel
/// gets to it).
fn kill_process(pid: i32) {
    // SAFETY: kill(2) on one pid, with no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let mut status = 0;
    for _ in 0..100 {
        // SAFETY: waitpid(2) on one pid, writing only the status we drop.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        // Reaped; or not our child (init reaps it) and already dead.
        if reaped == pid || (reaped != 0 && !process_running(pid)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether process `pid` still runs: neither gone nor a zombie. Without `/proc`, taken as gone.
fn process_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The report's words for descendants that left their group.
fn escaped_message(child: &str, escaped: &[Tagged]) -> String {
    let list: Vec<String> = escaped
        .iter()
        .map(|process| format!("pid {} `{}`", process.pid, process.command))
        .collect();
    format!(
        "{} descendant(s) of `{child}` had left its process group and were still running: {}; killed with SIGKILL",
        escaped.len(),
        list.join(", ")
    )
}

/// Whether a process of group `pgid` is running (not a zombie). Reads `/proc` on Linux; elsewhere
/// asks with signal 0, which also counts zombies.
fn group_running(pgid: u32) -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        let Ok(group) = i32::try_from(pgid) else {
            return false;
        };
        // SAFETY: killpg with signal 0 sends nothing; it only checks for existence.
        return unsafe { libc::killpg(group, 0) == 0 };
    };
    processes.filter_map(Result::ok).any(|process| {
        let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; the name may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|group| group.parse::<u32>().ok());
        group == Some(pgid) && state != Some("Z") && state != Some("X")
    })
}
