use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, timeout = "30s")]
async fn serve(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {}
