#[lifecycle_runtime::main(crate = "lifecycle<T>")]
async fn main() {}
