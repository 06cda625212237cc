use lifecycle_runtime::background;

#[background(interval = "5s", shutdown)]
async fn flush() {
    tokio::spawn(async {});
}

fn main() {}
