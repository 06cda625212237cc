use lifecycle_runtime::background;

#[derive(Debug)]
struct FlushError;

#[background(interval = "5s", shutdown)]
async fn flush() -> Result<(), FlushError> {
    Err(FlushError)
}

fn main() {}
