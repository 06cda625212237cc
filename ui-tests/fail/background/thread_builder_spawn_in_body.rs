use lifecycle_runtime::background;

#[background(interval = "5s", shutdown)]
async fn export() {
    let _worker = std::thread::Builder::new()
        .name("exporter".into())
        .spawn(|| {});
}

fn main() {}
