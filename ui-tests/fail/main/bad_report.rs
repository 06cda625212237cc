#[lifecycle_runtime::main(report = "yaml")]
async fn main() {}
