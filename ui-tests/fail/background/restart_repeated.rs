use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, restart = "on_failure", restart = "always")]
async fn feed(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {}
