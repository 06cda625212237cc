use lifecycle_runtime::managed_resource;

#[managed_resource(close_timout = "5s")]
struct Client {
    retries: u32,
}

fn main() {}
