use lifecycle_runtime::background;

#[background(interval = "1s", shutdown, stop_after = "flush")]
async fn flush() {}

#[background(interval = "1s", shutdown, name = "writer", stop_after = ["http", "", "http", 7])]
async fn write() {}

#[background(interval = "1s", shutdown, stop_after = [])]
async fn nothing() {}

#[background(interval = "1s", shutdown, stop_after = http)]
async fn bare() {}

#[background(interval = "1s", shutdown, stop_after)]
async fn flag() {}

fn main() {}
