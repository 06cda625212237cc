use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, interval = "10s")]
async fn flush() {}

fn main() {}
