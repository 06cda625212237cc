use lifecycle_runtime::managed_resource;

#[managed_resource]
struct Client {
    #[close(timout = "5s")]
    retries: u32,
}

fn main() {}
