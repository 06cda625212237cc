use lifecycle_runtime::background;

#[background(intervall = "5s", shutdown)]
async fn flush() {}

fn main() {}
