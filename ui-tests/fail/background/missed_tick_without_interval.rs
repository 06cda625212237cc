use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, missed_tick = "delay")]
async fn serve(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {}
