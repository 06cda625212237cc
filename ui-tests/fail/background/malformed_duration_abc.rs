use lifecycle_runtime::background;

#[background(interval = "1s", shutdown, stop_timeout = "abc")]
async fn flush() {}

fn main() {}
