//! `#[timeout]` on an async fn returning `io::Result`.

use lifecycle_runtime::timeout;

#[timeout("10s", name = "fetch-user")]
async fn fetch_user(id: u32) -> std::io::Result<String> {
    let name = lookup(id)?;
    Ok(name)
}

fn lookup(id: u32) -> std::io::Result<String> {
    Ok(id.to_string())
}

fn main() {
    let _future = fetch_user(1);
}
