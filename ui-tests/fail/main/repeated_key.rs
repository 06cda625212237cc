#[lifecycle_runtime::main(drain = "1s", drain = "2s")]
async fn main() {}
