use lifecycle_runtime::background;

#[background(interval = "1s", shutdown, thread, group = "disk")]
fn poll_disk() {}

fn main() {}
