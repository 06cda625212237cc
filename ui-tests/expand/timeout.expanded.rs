//! `#[timeout]` on an async fn returning `io::Result`.
use lifecycle_runtime::timeout;
async fn fetch_user(id: u32) -> std::io::Result<String> {
    match ::lifecycle_runtime::timeout(
            "fetch-user",
            ::lifecycle_runtime::__private::Duration::from_secs(10),
            ::lifecycle_runtime::__private::returning::<
                std::io::Result<String>,
                _,
            >(async move {
                let name = lookup(id)?;
                Ok(name)
            }),
        )
        .await
    {
        ::core::result::Result::Ok(outcome) => outcome,
        ::core::result::Result::Err(elapsed) => {
            <std::io::Result<
                String,
            > as ::lifecycle_runtime::__private::TimeoutResult>::from_elapsed(elapsed)
        }
    }
}
fn lookup(id: u32) -> std::io::Result<String> {
    Ok(id.to_string())
}
fn main() {
    let _future = fetch_user(1);
}
