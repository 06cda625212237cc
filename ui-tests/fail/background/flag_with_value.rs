use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, critical = true)]
async fn flush() {}

fn main() {}
