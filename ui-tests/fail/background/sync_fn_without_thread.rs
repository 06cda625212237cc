use lifecycle_runtime::background;

#[background(interval = "1s", shutdown)]
fn poll_disk() {}

fn main() {}
