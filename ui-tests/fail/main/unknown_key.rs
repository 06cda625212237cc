#[lifecycle_runtime::main(shutdown_timout = "30s")]
async fn main() {}
