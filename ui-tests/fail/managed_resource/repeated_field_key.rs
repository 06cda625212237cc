use lifecycle_runtime::managed_resource;

#[managed_resource]
struct Client {
    #[close(timeout = "5s", timeout = "10s")]
    retries: u32,
}

fn main() {}
