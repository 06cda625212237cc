//! `#[lifecycle_runtime::main]` with a budget and a drain.

#[lifecycle_runtime::main(shutdown_timeout = "30s", drain = "1s")]
async fn main() {
    lifecycle_runtime::shutdown_signal().triggered().await;
}
