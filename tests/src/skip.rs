//! Skipping a test whose requirement (a PostgreSQL installation, a browser) is missing: loudly,
//! and never under `CI=true`, where the requirement is installed and its absence is a failure.

use std::io::Write;
use std::path::PathBuf;

/// The target directory: `CARGO_TARGET_DIR`, else three levels above the test binary (which runs
/// from `<target>/<profile>/deps`). Skipped tests are listed in its `skipped-tests.txt`.
pub fn target_dir() -> Option<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(
            std::env::current_exe()
                .ok()?
                .ancestors()
                .nth(3)?
                .to_path_buf(),
        ),
    }
}

/// Skips the calling test: prints `SKIPPED: <test>: <why>; this test needs <needs>` and appends
/// it to `target/skipped-tests.txt`. Under `CI=true` it panics instead.
///
/// The skip is loud: libtest captures `eprintln!` and shows it only for failing tests, so the
/// line goes to the process's stderr directly (which libtest does not capture).
pub fn skip_or_fail(needs: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{needs} required under CI=true, but {why}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("(unnamed test)");
    let line = format!("SKIPPED: {test}: {why}; this test needs {needs}\n");
    // `std::io::stderr()` writes to fd 2 itself; only the print macros are captured.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(list) = target_dir().map(|dir| dir.join("skipped-tests.txt")) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&list)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(error) = written {
            let _ = std::io::stderr().lock().write_all(
                format!("cannot record the skip in {}: {error}\n", list.display()).as_bytes(),
            );
        }
    }
}
