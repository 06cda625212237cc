#[lifecycle_runtime::test(worker_threads = 2)]
async fn starts() {}

fn main() {}
