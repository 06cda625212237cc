use lifecycle_runtime::timeout;

#[timeout("0ms")]
async fn fetch() -> std::io::Result<u32> {
    Ok(1)
}

fn main() {}
