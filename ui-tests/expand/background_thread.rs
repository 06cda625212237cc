//! `#[background]`: a loop on a named OS thread.

use lifecycle_runtime::background;

#[background(interval = "100ms", shutdown, thread, name = "disk-poller")]
fn poll_disk(path: String) {
    let _ = path.len();
}

fn main() {
    let _handle = poll_disk("/".to_owned());
}
