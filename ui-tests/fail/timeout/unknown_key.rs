use lifecycle_runtime::timeout;

#[timeout("10s", nmae = "fetch-user")]
async fn fetch() -> std::io::Result<u32> {
    Ok(1)
}

fn main() {}
