use lifecycle_runtime::managed_resource;

#[managed_resource]
struct Client {
    #[close = "x"]
    retries: u32,
}

fn main() {}
