#[lifecycle_runtime::test(start_paused = 1)]
async fn starts() {}

fn main() {}
