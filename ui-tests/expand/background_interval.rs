//! `#[background]`: an async interval loop.

use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, stop_timeout = "1s", name = "auto-flush")]
async fn flush(batch: Vec<u8>) {
    let _ = batch.len();
}

fn main() {
    let _handle = flush(Vec::new());
}
