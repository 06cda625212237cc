use lifecycle_runtime::managed_resource;

struct Settings;

#[managed_resource]
struct Client {
    #[close(skip)]
    settings: Settings,
}

fn main() {}
