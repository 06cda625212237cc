//! `lifecycle-diagnose`: is the server reachable (and if not, why), how full is it, which
//! sessions does an application hold, which of them leaked, and (on request) terminate those.
//!
//! ```text
//! lifecycle-diagnose --url URL [--app NAME] [--idle-threshold 10m] [--timeout 5s]
//!                    [--kill-leaked] [--emergency] [--json]
//! ```
//!
//! Exit code: 0 healthy, 1 unhealthy (unreachable, no free slot, leaked sessions left), 2 bad
//! arguments.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection};

use super::connect::{self, ConnectCause};
use super::sessions::{self, ServerHealth, Session};
use crate::util::format_duration;

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

const USAGE: &str = "usage: lifecycle-diagnose --url URL [--app NAME] [--idle-threshold 10m] [--timeout 5s] [--kill-leaked] [--emergency] [--json]";

/// Parses the arguments (without the program name).
///
/// # Errors
///
/// A message naming the bad argument and the usage.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<DiagnoseArgs, String> {
    let mut parsed = DiagnoseArgs {
        url: String::new(),
        app: None,
        idle_threshold: Duration::from_secs(600),
        timeout: Duration::from_secs(5),
        kill_leaked: false,
        emergency: false,
        json: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let duration = |name: &str, text: String| {
            humantime::parse_duration(&text).map_err(|error| {
                format!(
                    "{name} {text:?} is not a duration ({error}); write it like \"10m\" or \"30s\""
                )
            })
        };
        match arg.as_str() {
            "--url" => parsed.url = value("--url")?,
            "--app" => parsed.app = Some(value("--app")?),
            "--idle-threshold" => {
                parsed.idle_threshold = duration("--idle-threshold", value("--idle-threshold")?)?
            }
            "--timeout" => parsed.timeout = duration("--timeout", value("--timeout")?)?,
            "--kill-leaked" => parsed.kill_leaked = true,
            "--emergency" => parsed.emergency = true,
            "--json" => parsed.json = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if parsed.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    if (parsed.kill_leaked || parsed.emergency) && parsed.app.is_none() {
        return Err(format!(
            "--kill-leaked and --emergency need --app NAME: they only ever touch that application's sessions\n{USAGE}"
        ));
    }
    Ok(parsed)
}

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

/// The whole command: parse, diagnose, print; returns the exit code.
pub fn main_with(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the tokio runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let diagnosis = runtime.block_on(diagnose(&args));
    if args.json {
        match serde_json::to_string_pretty(&diagnosis) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("cannot write JSON: {error}");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<DiagnoseArgs, String> {
        parse_args(list.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_named() {
        let parsed = args(&[
            "--url",
            "postgres://db/x",
            "--app",
            "svc",
            "--kill-leaked",
            "--idle-threshold",
            "2m",
        ])
        .unwrap();
        assert_eq!(parsed.app.as_deref(), Some("svc"));
        assert!(parsed.kill_leaked);
        assert_eq!(parsed.idle_threshold, Duration::from_secs(120));
        assert!(args(&[]).unwrap_err().starts_with("--url is required"));
        assert!(
            args(&["--url", "x", "--kill-leaked"])
                .unwrap_err()
                .contains("need --app NAME")
        );
        assert!(
            args(&["--url", "x", "--timeout", "soon"])
                .unwrap_err()
                .contains("--timeout \"soon\" is not a duration")
        );
        assert!(
            args(&["--url", "x", "--frobnicate"])
                .unwrap_err()
                .starts_with("unknown argument \"--frobnicate\"")
        );
    }
}
