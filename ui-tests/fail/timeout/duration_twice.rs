use lifecycle_runtime::timeout;

#[timeout("10s", duration = "5s")]
async fn fetch() -> std::io::Result<u32> {
    Ok(1)
}

fn main() {}
