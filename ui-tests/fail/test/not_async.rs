#[lifecycle_runtime::test]
fn starts() {}

fn main() {}
