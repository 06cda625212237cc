use lifecycle_runtime::timeout;

#[derive(Debug)]
struct FetchError;

#[timeout("10s")]
async fn fetch() -> Result<u32, FetchError> {
    Ok(1)
}

fn main() {}
