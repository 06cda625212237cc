use lifecycle_runtime::background;

#[background(interval = "5s", shutdown)]
async fn flush() {
    let worker = std::thread::spawn(|| {});
    let _ = worker.join();
}

fn main() {}
