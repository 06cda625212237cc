use lifecycle_runtime::managed_resource;

#[managed_resource]
struct Client {
    #[close]
    retries: u32,
}

fn main() {}
