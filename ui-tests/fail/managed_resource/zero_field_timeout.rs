use lifecycle_runtime::managed_resource;

#[managed_resource]
struct Client {
    #[close(timeout = "0s")]
    retries: u32,
}

fn main() {}
