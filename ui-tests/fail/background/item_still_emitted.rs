use lifecycle_runtime::background;

// Only an argument is wrong: the fn is still expanded (with the default for what was rejected), so
// callers see the `TaskHandle` it returns and the only error is the macro's own.
#[background(interval = "5s", shutdown, stop_timeout = "0s")]
async fn flush(batch: Vec<u8>) {
    let _ = batch;
}

fn main() {
    let handle = flush(Vec::new());
    let _ = handle.name();
}
