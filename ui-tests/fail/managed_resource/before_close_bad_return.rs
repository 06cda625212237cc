use lifecycle_runtime::managed_resource;

#[managed_resource(before_close = Client::say_goodbye)]
struct Client {
    retries: u32,
}

impl Client {
    async fn say_goodbye(&self) -> bool {
        self.retries > 0
    }
}

fn main() {}
