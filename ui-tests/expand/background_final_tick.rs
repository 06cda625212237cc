//! `#[background]`: a flusher with one last tick after shutdown.

use lifecycle_runtime::{Shutdown, background};

#[background(interval = "1s", shutdown = "final_tick", timeout = "10s")]
async fn flusher(shutdown: Shutdown) {
    if shutdown.is_triggered() {
        // the last tick
    }
}

fn main() {
    let _handle = flusher();
}
