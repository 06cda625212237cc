use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, restart = "on_failure", max_restarts = "5/1 fortnight")]
async fn feed(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {}
