use lifecycle_runtime::managed_resource;

#[managed_resource(before_close = "not a path")]
struct Client {
    retries: u32,
}

fn main() {}
