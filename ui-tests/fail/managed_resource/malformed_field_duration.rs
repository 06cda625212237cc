use lifecycle_runtime::managed_resource;

#[managed_resource]
struct Client {
    #[close(timeout = "5 parsecs")]
    retries: u32,
}

fn main() {}
