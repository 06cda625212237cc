use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, lifecycle::critical, group("db"))]
async fn flush() {}

fn main() {}
