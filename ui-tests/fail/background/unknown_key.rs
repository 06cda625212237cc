use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, colour = "blue")]
async fn flush() {}

fn main() {}
