#[lifecycle_runtime::test]
async fn starts(port: u16) {
    let _ = port;
}

fn main() {}
