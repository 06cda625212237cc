#[lifecycle_runtime::test(shutdown_timeout = "0s")]
async fn starts() {}

fn main() {}
