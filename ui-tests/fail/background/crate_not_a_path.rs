use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, crate = "not a path!")]
async fn flush() {}

fn main() {}
