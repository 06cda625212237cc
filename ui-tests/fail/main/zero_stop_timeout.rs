#[lifecycle_runtime::main(stop_timeout = "0ms")]
async fn main() {}
