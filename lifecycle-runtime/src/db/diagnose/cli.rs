//! The command line of `lifecycle-diagnose` (feature `cli`): clap fills in a [`DiagnoseArgs`],
//! [`run`] does the rest.
//!
//! `--help` and `--version` print to stdout and exit 0; a bad argument prints what is wrong, the
//! usage and a pointer to `--help` to stderr and exits 2.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use super::{DiagnoseArgs, run};

/// The environment variable read when `--url` is not given.
pub const URL_VAR: &str = "DATABASE_URL";

const EXIT_STATUS: &str = "\
Exit status:
  0  healthy
  1  unhealthy: the server is unreachable, has no free connection slot, or the application has
     leaked sessions left (terminated ones do not count)
  2  bad arguments (or the diagnosis could not start)";

/// Is a PostgreSQL server reachable (and if not, why), how full is it, which sessions does an
/// application hold and which of them leaked; on request, terminates those.
#[derive(Debug, Parser)]
#[command(
    name = "lifecycle-diagnose",
    bin_name = "lifecycle-diagnose",
    version,
    after_help = EXIT_STATUS
)]
struct Cli {
    /// The server, `postgres://user:password@host:port/database` [default: $DATABASE_URL]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The application whose sessions to look at (its `application_name`)
    #[arg(long, value_name = "NAME")]
    app: Option<String>,
    /// Idle sessions older than this count as leaked (idle-in-transaction ones always do)
    // "10m" and "5s": DEFAULT_IDLE_THRESHOLD and DEFAULT_TIMEOUT (a test holds them equal).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    idle_threshold: Duration,
    /// Limit for connecting and for each query
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    timeout: Duration,
    /// Terminate the application's leaked sessions (needs --app)
    #[arg(long)]
    kill_leaked: bool,
    /// Terminate every session of the application but this one (needs --app)
    #[arg(long)]
    emergency: bool,
    /// Print the diagnosis as JSON instead of text
    #[arg(long)]
    json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("not a duration ({error}); write it like \"10m\" or \"30s\""))
}

/// Parses a command line (the program's name first, as in [`std::env::args_os`]); without
/// `--url` the server is [`URL_VAR`]'s.
///
/// # Errors
///
/// clap's error for `--help` and `--version` (print it, exit 0: [`clap::Error::exit_code`]) and
/// for bad arguments, naming the argument and what to do (exit 2).
pub fn parse_from<I, T>(args: I) -> Result<DiagnoseArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_with(args, std::env::var_os(URL_VAR))
}

fn parse_with<I, T>(args: I, env_url: Option<OsString>) -> Result<DiagnoseArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let usage = |message: String| Cli::command().error(ErrorKind::MissingRequiredArgument, message);
    let url = match cli.url {
        Some(url) => url,
        None => match env_url.filter(|url| !url.is_empty()) {
            Some(url) => url.into_string().map_err(|_| {
                Cli::command().error(
                    ErrorKind::InvalidUtf8,
                    format!("{URL_VAR} is not valid UTF-8: pass the server with --url URL"),
                )
            })?,
            None => {
                return Err(usage(format!(
                    "no server to diagnose: pass --url URL or set {URL_VAR}"
                )));
            }
        },
    };
    if (cli.kill_leaked || cli.emergency) && cli.app.is_none() {
        return Err(usage(
            "--kill-leaked and --emergency need --app NAME: they only ever touch that application's sessions"
                .to_owned(),
        ));
    }
    Ok(DiagnoseArgs {
        url,
        app: cli.app,
        idle_threshold: cli.idle_threshold,
        timeout: cli.timeout,
        kill_leaked: cli.kill_leaked,
        emergency: cli.emergency,
        json: cli.json,
    })
}

/// The whole command on this process's arguments: parse, diagnose, print; returns the exit code
/// (0 healthy, 1 unhealthy, 2 bad arguments).
pub fn main() -> ExitCode {
    main_with(std::env::args_os())
}

/// [`main`] on the given command line (the program's name first).
pub fn main_with<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match parse_from(args) {
        Ok(args) => run(&args),
        Err(error) => {
            // `--help` and `--version` go to stdout, errors to stderr; clap knows which.
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::diagnose::DEFAULT_TIMEOUT;

    fn parse(list: &[&str], env_url: Option<&str>) -> Result<DiagnoseArgs, clap::Error> {
        let args = std::iter::once("lifecycle-diagnose").chain(list.iter().copied());
        parse_with(args, env_url.map(OsString::from))
    }

    fn message(list: &[&str]) -> String {
        parse(list, None).unwrap_err().to_string()
    }

    #[test]
    fn arguments_parse_with_defaults() {
        let parsed = parse(
            &[
                "--url=postgres://db/x",
                "--app",
                "svc",
                "--kill-leaked",
                "--idle-threshold",
                "2m",
            ],
            None,
        )
        .unwrap();
        assert_eq!(parsed.url, "postgres://db/x");
        assert_eq!(parsed.app.as_deref(), Some("svc"));
        assert!(parsed.kill_leaked && !parsed.emergency && !parsed.json);
        assert_eq!(parsed.idle_threshold, Duration::from_secs(120));
        assert_eq!(parsed.timeout, DEFAULT_TIMEOUT);
        let defaults = parse(&["--url", "postgres://db/x"], None).unwrap();
        assert_eq!(defaults, DiagnoseArgs::new("postgres://db/x"));
    }

    #[test]
    fn the_url_falls_back_to_the_environment_and_the_flag_wins() {
        let from_env = parse(&["--json"], Some("postgres://env/x")).unwrap();
        assert_eq!(from_env.url, "postgres://env/x");
        assert!(from_env.json);
        let flag = parse(&["--url", "postgres://flag/x"], Some("postgres://env/x")).unwrap();
        assert_eq!(flag.url, "postgres://flag/x");
        let empty = parse(&[], Some("")).unwrap_err();
        assert_eq!(empty.exit_code(), 2);
        assert!(
            empty
                .to_string()
                .contains("no server to diagnose: pass --url URL or set DATABASE_URL"),
            "{empty}"
        );
    }

    #[test]
    fn bad_arguments_are_named_and_exit_2() {
        let missing = parse(&[], None).unwrap_err();
        assert_eq!(missing.exit_code(), 2);
        assert!(message(&["--url", "x", "--kill-leaked"]).contains("need --app NAME"));
        let duration = message(&["--url", "x", "--timeout", "soon"]);
        assert!(
            duration.contains("invalid value 'soon' for '--timeout <DURATION>'")
                && duration.contains("write it like \"10m\""),
            "{duration}"
        );
        let unknown = parse(&["--url", "x", "--frobnicate"], None).unwrap_err();
        assert_eq!(unknown.exit_code(), 2);
        assert!(unknown.to_string().contains("'--frobnicate'"), "{unknown}");
    }

    #[test]
    fn help_and_version_exit_0_and_help_documents_the_exit_codes() {
        let help = parse(&["--help"], None).unwrap_err();
        assert_eq!((help.kind(), help.exit_code()), (ErrorKind::DisplayHelp, 0));
        let text = help.to_string();
        assert!(
            text.contains("Exit status:") && text.contains("2  bad arguments"),
            "{text}"
        );
        assert!(text.contains("DATABASE_URL"), "{text}");
        let version = parse(&["--version"], None).unwrap_err();
        assert_eq!(version.exit_code(), 0);
        assert!(version.to_string().contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
