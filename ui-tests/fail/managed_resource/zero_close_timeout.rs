use lifecycle_runtime::managed_resource;

#[managed_resource(close_timeout = "0s")]
struct Client {
    retries: u32,
}

fn main() {}
