use lifecycle_runtime::managed_resource;

struct Settings;

async fn forget(_settings: &Settings) {}

#[managed_resource]
struct Client {
    #[close(skip = "plain data", with = forget)]
    settings: Settings,
}

fn main() {}
