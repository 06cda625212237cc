//! What the example tests share: the demo service as a command of its own, on free ports and an
//! SQLite file no other test uses (tests run in parallel).

use std::path::PathBuf;
use std::process::Command;

/// The demo service on free ports (`LISTEN_ADDR` and `ADMIN_ADDR` both `127.0.0.1:0`), with an
/// SQLite file named for `test` and this process (removed first); returns the command and the
/// file.
pub fn demo_command(test: &str) -> (Command, PathBuf) {
    let file = std::env::temp_dir().join(format!(
        "lifecycle-demo-{test}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&file);
    let mut command = Command::new(env!("CARGO_BIN_EXE_service"));
    command
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", file.display()),
        )
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ADMIN_ADDR", "127.0.0.1:0");
    (command, file)
}
