//! `lifecycle-diagnose`: is the server reachable (and if not, why), how full is it, which
//! sessions does an application hold, which of them leaked, and (on request) terminate those.
//!
//! The diagnosis is a library function on typed arguments ([`DiagnoseArgs`], [`diagnose`],
//! [`render`], [`run`]); the command line that fills them in is `cli` (feature `cli`, so
//! library users never compile the argument parser):
//!
//! ```text
//! lifecycle-diagnose [--url URL] [--app NAME] [--idle-threshold 10m] [--timeout 5s]
//!                    [--kill-leaked] [--emergency] [--json]
//! ```
//!
//! Without `--url` the server is `DATABASE_URL`'s. Exit code: 0 healthy, 1 unhealthy
//! (unreachable, no free slot, leaked sessions left), 2 bad arguments.

#![cfg_attr(docsrs, doc(cfg(feature = "postgres")))]

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection};

use super::connect::{self, ConnectCause};
use super::sessions::{self, ServerHealth, Session};
use crate::util::format_duration;

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;

/// What to do, from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagnoseArgs {
    /// The server, `postgres://...`.
    pub url: String,
    /// The application whose sessions to look at (`application_name`).
    pub app: Option<String>,
    /// Idle sessions older than this count as leaked (idle-in-transaction ones always do).
    pub idle_threshold: Duration,
    /// Limit for connecting and for each query.
    pub timeout: Duration,
    /// Terminate the application's leaked sessions.
    pub kill_leaked: bool,
    /// Terminate every session of the application (but this one).
    pub emergency: bool,
    /// Print JSON instead of text.
    pub json: bool,
}

impl DiagnoseArgs {
    /// Looks at the server at `url` with the command line's defaults: no application, idle
    /// threshold 10 min, timeout 5 s, nothing terminated, text output.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            app: None,
            idle_threshold: DEFAULT_IDLE_THRESHOLD,
            timeout: DEFAULT_TIMEOUT,
            kill_leaked: false,
            emergency: false,
            json: false,
        }
    }
}

/// Idle sessions older than this count as leaked unless told otherwise (`--idle-threshold`).
pub const DEFAULT_IDLE_THRESHOLD: Duration = Duration::from_secs(600);

/// Limit for connecting and for each query unless told otherwise (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the diagnosis found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Diagnosis {
    /// The URL, password redacted.
    pub url: String,
    /// Whether a connection could be made.
    pub reachable: bool,
    /// Why not, when it could not.
    pub cause: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
    /// Slots and sessions.
    pub health: Option<ServerHealth>,
    /// The application looked at.
    pub app: Option<String>,
    /// Its sessions.
    pub sessions: Vec<Session>,
    /// Sessions terminated by this run.
    pub terminated: Vec<Session>,
    /// Why the verdict is "unhealthy", if it is.
    pub problems: Vec<String>,
}

impl Diagnosis {
    /// True when nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

async fn connect_once(url: &str, timeout: Duration) -> Result<AnyConnection, ConnectCause> {
    let options: AnyConnectOptions =
        url.parse()
            .map_err(|error: sqlx::Error| ConnectCause::Configuration {
                message: error.to_string(),
            })?;
    match tokio::time::timeout(timeout, AnyConnection::connect_with(&options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(ConnectCause::classify(&error)),
        Err(_) => Err(ConnectCause::NoAnswer { limit: timeout }),
    }
}

/// Runs the diagnosis (and the terminations asked for).
pub async fn diagnose(args: &DiagnoseArgs) -> Diagnosis {
    super::install_drivers();
    let mut diagnosis = Diagnosis {
        url: connect::redact(&args.url),
        reachable: false,
        cause: None,
        fix: None,
        health: None,
        app: args.app.clone(),
        sessions: Vec::new(),
        terminated: Vec::new(),
        problems: Vec::new(),
    };
    let separator = if args.url.contains('?') { '&' } else { '?' };
    let url = if args.url.contains("application_name=") {
        args.url.clone()
    } else {
        format!("{}{separator}application_name=lifecycle-diagnose", args.url)
    };
    let mut connection = match connect_once(&url, args.timeout).await {
        Ok(connection) => connection,
        Err(cause) => {
            diagnosis
                .problems
                .push(format!("the server is unreachable: {cause}"));
            diagnosis.fix = Some(cause.fixes().to_owned());
            diagnosis.cause = Some(cause.to_string());
            return diagnosis;
        }
    };
    diagnosis.reachable = true;
    if let Err(problem) = inspect(&mut connection, args, &mut diagnosis).await {
        diagnosis.problems.push(problem);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), connection.close()).await;
    diagnosis
}

async fn inspect(
    connection: &mut AnyConnection,
    args: &DiagnoseArgs,
    diagnosis: &mut Diagnosis,
) -> Result<(), String> {
    let limit = args.timeout;
    let timed = |what: &str| format!("{what} took longer than {}", format_duration(limit));
    let health = tokio::time::timeout(limit, sessions::server_health(connection))
        .await
        .map_err(|_| timed("reading server health"))?
        .map_err(|error| format!("reading server health failed: {error}"))?;
    if health.free() == 0 {
        diagnosis.problems.push(format!(
            "no free connection slot: {} in use of {} ({} reserved for superusers)",
            health.in_use, health.max_connections, health.reserved
        ));
    }
    diagnosis.health = Some(health);
    let Some(app) = &args.app else { return Ok(()) };
    let list = tokio::time::timeout(
        limit,
        sessions::list_sessions(connection, app, args.idle_threshold),
    )
    .await
    .map_err(|_| timed("listing sessions"))?
    .map_err(|error| format!("listing sessions failed: {error}"))?;
    let to_terminate: Vec<Session> = if args.emergency {
        list.clone()
    } else if args.kill_leaked {
        list.iter()
            .filter(|session| session.leaked)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    if !to_terminate.is_empty() {
        diagnosis.terminated =
            tokio::time::timeout(limit, sessions::terminate(connection, to_terminate))
                .await
                .map_err(|_| timed("terminating sessions"))?
                .map_err(|error| format!("terminating sessions failed: {error}"))?;
    }
    let terminated: Vec<i32> = diagnosis
        .terminated
        .iter()
        .map(|session| session.pid)
        .collect();
    let left = list
        .iter()
        .filter(|session| session.leaked && !terminated.contains(&session.pid))
        .count();
    if left > 0 {
        diagnosis.problems.push(format!(
            "{left} leaked session(s) of `{app}` (idle in a transaction, or idle longer than {}); rerun with --kill-leaked to terminate them",
            format_duration(args.idle_threshold)
        ));
    }
    diagnosis.sessions = list;
    Ok(())
}

/// The diagnosis as text for people.
pub fn render(diagnosis: &Diagnosis) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "server: {}", diagnosis.url);
    if !diagnosis.reachable {
        let _ = writeln!(
            text,
            "  UNREACHABLE: {}",
            diagnosis.cause.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(text, "  fix: {}", diagnosis.fix.as_deref().unwrap_or(""));
    }
    if let Some(health) = &diagnosis.health {
        let _ = writeln!(
            text,
            "  connections: {} in use of {} ({} reserved for superusers, {} free)",
            health.in_use,
            health.max_connections,
            health.reserved,
            health.free()
        );
        for (application, count) in &health.by_application {
            let _ = writeln!(text, "    {count:>4}  {application}");
        }
    }
    if let Some(app) = &diagnosis.app {
        let _ = writeln!(
            text,
            "application `{app}`: {} session(s)",
            diagnosis.sessions.len()
        );
        let mut states: Vec<(&str, usize)> = Vec::new();
        for session in &diagnosis.sessions {
            match states.iter_mut().find(|(state, _)| *state == session.state) {
                Some((_, count)) => *count += 1,
                None => states.push((&session.state, 1)),
            }
        }
        for (state, count) in states {
            let _ = writeln!(text, "    {count:>4}  {state}");
        }
        for session in diagnosis.sessions.iter().filter(|session| session.leaked) {
            let killed = diagnosis
                .terminated
                .iter()
                .any(|gone| gone.pid == session.pid);
            let _ = writeln!(
                text,
                "  {} pid {} {} for {}: {}",
                if killed { "TERMINATED" } else { "LEAKED" },
                session.pid,
                session.state,
                format_duration(session.in_state),
                session.query
            );
        }
        for session in diagnosis
            .terminated
            .iter()
            .filter(|session| !session.leaked)
        {
            let _ = writeln!(
                text,
                "  TERMINATED pid {} {} (emergency)",
                session.pid, session.state
            );
        }
    }
    if diagnosis.healthy() {
        let _ = writeln!(text, "healthy");
    } else {
        for problem in &diagnosis.problems {
            let _ = writeln!(text, "UNHEALTHY: {problem}");
        }
    }
    text
}

/// The whole command once the arguments are known: diagnose, print (text or JSON) to stdout,
/// return the exit code: 0 healthy, 1 unhealthy, 2 when the runtime cannot start or the JSON
/// cannot be written.
pub fn run(args: &DiagnoseArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lifecycle-diagnose: cannot start the tokio runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let diagnosis = runtime.block_on(diagnose(args));
    if args.json {
        match serde_json::to_string_pretty(&diagnosis) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("lifecycle-diagnose: cannot write JSON: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", render(&diagnosis));
    }
    if diagnosis.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
