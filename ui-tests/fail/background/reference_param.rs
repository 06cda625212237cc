use lifecycle_runtime::background;

#[background(interval = "5s", shutdown)]
async fn greet(name: &str) {
    let _ = name;
}

fn main() {}
