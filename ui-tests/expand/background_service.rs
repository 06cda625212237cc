//! `#[background]`: a service that runs once and watches its `Shutdown`.

use lifecycle_runtime::{Shutdown, background};

#[background(shutdown, critical)]
async fn serve(port: u16, shutdown: Shutdown) -> Result<(), String> {
    let _ = port;
    shutdown.triggered().await;
    Ok(())
}

fn main() {
    let _handle = serve(8080);
}
