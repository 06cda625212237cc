use lifecycle_runtime::{Shutdown, background};

#[background(shutdown = "final_tick")]
async fn flusher(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {}
