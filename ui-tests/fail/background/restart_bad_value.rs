use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, restart = "sometimes")]
async fn feed(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {}
