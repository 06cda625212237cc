use lifecycle_runtime::managed_resource;

struct Settings;

#[managed_resource]
struct Client {
    #[close(skip = "plain data", timeout = "5s")]
    settings: Settings,
}

fn main() {}
