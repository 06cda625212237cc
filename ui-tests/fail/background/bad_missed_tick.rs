use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, missed_tick = "catch_up")]
async fn flush() {}

fn main() {}
