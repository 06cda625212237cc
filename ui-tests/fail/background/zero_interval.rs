use lifecycle_runtime::background;

#[background(interval = "0s", shutdown)]
async fn spin() {}

fn main() {}
