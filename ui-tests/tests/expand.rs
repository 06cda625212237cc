//! Expansion snapshots: what each macro form expands to, as a user auditing it with
//! `cargo expand` sees it. The inputs are `expand/*.rs`, and `expand/test_attribute/*.rs` for
//! `#[lifecycle_runtime::test]`; the committed `*.expanded.rs` next to them are compared with a
//! fresh expansion.
//!
//! After changing an expansion on purpose, regenerate with
//! `MACROTEST=overwrite cargo test -p lifecycle-ui-tests --test expand` and read the diff.
//!
//! `cargo expand`'s output changes between its versions (and rustc's), so the snapshots are made
//! with the version pinned below; `.ci/run` installs it.

use std::io::Write;
use std::process::Command;

/// The cargo-expand version the snapshots were made with.
const CARGO_EXPAND_VERSION: &str = "1.0.127";

/// Frames a message that must not be missed.
const RULE: &str = "==================================================================";

/// Whether `cargo expand` is installed, or why not.
fn cargo_expand() -> Result<String, String> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["expand", "--version"])
        .output()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

#[test]
fn expansions_match_the_snapshots() {
    let install = format!("cargo install cargo-expand --locked --version {CARGO_EXPAND_VERSION}");
    let version = match cargo_expand() {
        Ok(version) => version,
        Err(why) => {
            assert!(
                !under_ci(),
                "cargo-expand is not installed ({why}); CI must run the expansion snapshots: {install}"
            );
            // Straight to the process's stderr: the test harness captures `eprintln!`, and a
            // skip nobody sees is no better than a pass.
            let _ = writeln!(
                std::io::stderr(),
                "\n{RULE}\nSKIP: cargo-expand is not installed; run: {install}\n{RULE}\n"
            );
            return;
        }
    };
    let expected = format!("cargo-expand {CARGO_EXPAND_VERSION}");
    if version != expected {
        assert!(
            !under_ci(),
            "found {version}, but the snapshots were made with {expected}: {install}"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n{RULE}\nWARNING: found {version}, but the snapshots were made with {expected}; a \
             difference may come from the tool: {install}\n{RULE}\n"
        );
    }
    // `#[test]` items exist only in a test build, so the test form is expanded with `--tests`.
    // The test harness then writes the source file's path into the expansion: remap it to one
    // that is the same on every machine.
    let remap = format!(
        "build.rustflags=[\"--remap-path-prefix={}=ui-tests\"]",
        env!("CARGO_MANIFEST_DIR")
    );
    let test_args = ["--tests", "--config", remap.as_str()];
    if under_ci() {
        // A snapshot missing under CI is a failure, not a file to write.
        macrotest::expand_without_refresh("expand/*.rs");
        macrotest::expand_without_refresh_args("expand/test_attribute/*.rs", test_args);
    } else {
        macrotest::expand("expand/*.rs");
        macrotest::expand_args("expand/test_attribute/*.rs", test_args);
    }
}
