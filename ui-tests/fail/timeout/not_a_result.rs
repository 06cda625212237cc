use lifecycle_runtime::timeout;

#[timeout("10s")]
async fn fetch() -> u32 {
    1
}

fn main() {}
