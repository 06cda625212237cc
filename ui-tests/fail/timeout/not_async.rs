use lifecycle_runtime::timeout;

#[timeout("10s")]
fn fetch() -> std::io::Result<u32> {
    Ok(1)
}

fn main() {}
