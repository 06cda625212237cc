use lifecycle_runtime::background;

#[background(interval = "5", shutdown)]
async fn flush() {}

fn main() {}
