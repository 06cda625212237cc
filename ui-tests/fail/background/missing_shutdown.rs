use lifecycle_runtime::background;

#[background(interval = "5s")]
async fn flush() {}

fn main() {}
