use lifecycle_runtime::background;

#[background(interval = "1s", shutdown, thread)]
async fn poll_disk() {}

fn main() {}
