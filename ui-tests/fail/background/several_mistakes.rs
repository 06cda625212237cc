use lifecycle_runtime::background;

// Every mistake is reported in one compile.
#[background(intervall = "5s", interval = "0s", shutdown)]
async fn flush() {
    tokio::spawn(async {});
}

fn main() {}
