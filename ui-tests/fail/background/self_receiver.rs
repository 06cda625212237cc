use lifecycle_runtime::background;

struct Cache;

impl Cache {
    #[background(interval = "5s", shutdown)]
    async fn flush(&self) {}
}

fn main() {}
