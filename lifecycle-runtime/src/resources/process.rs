//! Subprocesses that stop with the program: each runs in its own process group, and closing it
//! sends SIGTERM to the whole group, waits, then SIGKILL. Nothing it started outlives it.

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

/// Process groups of managed children that may still run: the ones a program exiting at once
/// (a second signal) must not leave behind.
static LIVE_GROUPS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// SIGKILLs every managed child's process group. For exits that cannot wait for a proper close.
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
}

impl fmt::Debug for ManagedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedChild")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("term_timeout", &self.term_timeout)
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

    /// Starts the process in a new process group. (Registering it is `spawn`'s part, in
    /// `coordinator/manage.rs`, since it needs the current coordinator.)
    pub(crate) fn start(mut self) -> io::Result<ManagedChild> {
        #[cfg(unix)]
        self.command.process_group(0);
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
        Err(message.into())
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
