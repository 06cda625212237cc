use lifecycle_runtime::background;

#[background(interval = "1s", shutdown, thread, timeout = "5s")]
fn poll_disk() {}

fn main() {}
