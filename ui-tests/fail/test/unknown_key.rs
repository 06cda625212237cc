#[lifecycle_runtime::test(flavour = "multi_thread")]
async fn starts() {}

fn main() {}
