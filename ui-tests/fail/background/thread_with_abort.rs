use lifecycle_runtime::background;

#[background(interval = "1s", shutdown = "abort", thread)]
fn poll_disk() {}

fn main() {}
