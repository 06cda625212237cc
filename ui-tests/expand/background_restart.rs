//! `#[background]`: supervised services, restarted when they fail (or, with `"always"`, when
//! they return before shutdown), at most `max_restarts` times in its period.

use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, critical, restart = "on_failure", max_restarts = "3/10s")]
async fn feed(url: String, shutdown: Shutdown) -> Result<(), String> {
    let _ = url.len();
    shutdown.triggered().await;
    Ok(())
}

#[background(shutdown, thread, restart = "always")]
fn reader(shutdown: Shutdown) {
    shutdown.wait_blocking();
}

fn main() {
    let _feed = feed("postgres://db".to_owned());
    let _reader = reader();
}
