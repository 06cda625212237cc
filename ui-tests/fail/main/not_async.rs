#[lifecycle_runtime::main]
fn main() {}
