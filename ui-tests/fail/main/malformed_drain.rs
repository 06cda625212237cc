#[lifecycle_runtime::main(drain = "a while")]
async fn main() {}
