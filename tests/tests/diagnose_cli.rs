//! The `lifecycle-diagnose` command line, run as a child process (the fixture is the real
//! binary's source): help and version on stdout with exit 0, bad arguments named with exit 2,
//! and `DATABASE_URL` standing in for `--url`. No server is needed: the diagnosis cases aim at a
//! port nothing listens on.

use std::process::{Command, Output};

/// Nothing listens on port 1 of the loopback: the connection is refused at once.
const REFUSED: &str = "postgres://app@127.0.0.1:1/postgres";

fn diagnose(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifecycle-diagnose-fixture"));
    command.args(args).env_remove("DATABASE_URL");
    command
}

fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the diagnose fixture runs");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn help_goes_to_stdout_exits_0_and_documents_the_exit_codes() {
    for flag in ["--help", "-h"] {
        let (code, stdout, stderr) = run(&mut diagnose(&[flag]));
        assert_eq!(code, Some(0), "{flag}: {stdout}{stderr}");
        assert_eq!(stderr, "", "{flag}");
        assert!(stdout.contains("Usage: lifecycle-diagnose"), "{stdout}");
        for line in ["0  healthy", "1  unhealthy", "2  bad arguments"] {
            assert!(stdout.contains(line), "{flag} lacks {line:?}: {stdout}");
        }
        for option in [
            "--url <URL>",
            "DATABASE_URL",
            "--app <NAME>",
            "--json",
            "--kill-leaked",
            "--emergency",
            "--idle-threshold <DURATION>",
            "--timeout <DURATION>",
            "--version",
        ] {
            assert!(stdout.contains(option), "{flag} lacks {option}: {stdout}");
        }
    }
}

#[test]
fn version_goes_to_stdout_and_exits_0() {
    let (code, stdout, stderr) = run(&mut diagnose(&["--version"]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "lifecycle-diagnose 0.1.0");
}

#[test]
fn an_unknown_flag_exits_2_naming_it() {
    let (code, stdout, stderr) = run(&mut diagnose(&["--url", REFUSED, "--frobnicate"]));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("unexpected argument '--frobnicate'"),
        "{stderr}"
    );
    assert!(stderr.contains("--help"), "points to --help: {stderr}");
}

#[test]
fn a_bad_duration_exits_2_naming_the_flag_and_the_value() {
    let (code, stdout, stderr) = run(&mut diagnose(&["--url", REFUSED, "--timeout", "soon"]));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("invalid value 'soon' for '--timeout <DURATION>'"),
        "{stderr}"
    );
    assert!(stderr.contains("write it like \"10m\""), "{stderr}");
}

#[test]
fn without_url_or_database_url_it_exits_2_naming_both() {
    let (code, stdout, stderr) = run(&mut diagnose(&["--json"]));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("no server to diagnose: pass --url URL or set DATABASE_URL"),
        "{stderr}"
    );
    let (code, _, stderr) = run(diagnose(&["--emergency"]).env("DATABASE_URL", REFUSED));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("need --app NAME"), "{stderr}");
}

#[test]
fn database_url_reaches_the_same_diagnosis_as_url() {
    let diagnosis = |command: &mut Command| {
        let (code, stdout, stderr) = run(command);
        assert_eq!(code, Some(1), "unreachable is unhealthy: {stdout}{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
        json
    };
    let flag = diagnosis(&mut diagnose(&[
        "--url",
        REFUSED,
        "--json",
        "--timeout",
        "2s",
    ]));
    let equals_form = diagnosis(&mut diagnose(&[
        &format!("--url={REFUSED}"),
        "--json",
        "--timeout=2s",
    ]));
    let env = diagnosis(diagnose(&["--json", "--timeout", "2s"]).env("DATABASE_URL", REFUSED));
    // The flag wins over the environment.
    let both = diagnosis(
        diagnose(&["--url", REFUSED, "--json", "--timeout", "2s"])
            .env("DATABASE_URL", "postgres://app@127.0.0.1:2/elsewhere"),
    );
    assert_eq!(flag["reachable"], false, "{flag:#}");
    assert!(
        flag["cause"]
            .as_str()
            .is_some_and(|cause| cause.starts_with("connection refused")),
        "{flag:#}"
    );
    assert_eq!(flag["url"], REFUSED);
    for other in [&equals_form, &env, &both] {
        assert_eq!(other, &flag);
    }
}
