use lifecycle_runtime::{Shutdown, background};

#[background(shutdown)]
async fn serve(first: Shutdown, second: Shutdown) {
    first.triggered().await;
    second.triggered().await;
}

fn main() {}
