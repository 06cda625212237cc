#[lifecycle_runtime::main(ready = "immediately")]
async fn main() {}
