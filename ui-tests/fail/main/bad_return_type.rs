#[lifecycle_runtime::main]
async fn main() -> u32 {
    0
}
