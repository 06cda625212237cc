use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, max_restarts = "5/1m")]
async fn feed(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {}
