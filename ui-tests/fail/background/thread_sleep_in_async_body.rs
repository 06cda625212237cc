use std::time::Duration;

use lifecycle_runtime::background;

#[background(interval = "5s", shutdown)]
async fn flush() {
    std::thread::sleep(Duration::from_millis(10));
}

fn main() {}
