use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, name = "  ")]
async fn flush() {}

fn main() {}
