use lifecycle_runtime::timeout;

#[timeout("10s")]
async fn fetch() {}

fn main() {}
