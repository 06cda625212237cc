use lifecycle_runtime::background;

#[background(interval = "5s", shutdown = "later")]
async fn flush() {}

fn main() {}
