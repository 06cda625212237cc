#[lifecycle_runtime::main(crate = "lifecycle runtime")]
async fn main() {}
