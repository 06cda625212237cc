use lifecycle_runtime::timeout;

#[timeout("10")]
async fn fetch() -> std::io::Result<u32> {
    Ok(1)
}

fn main() {}
