#[lifecycle_runtime::test(flavor = "single_thread")]
async fn starts() {}

fn main() {}
