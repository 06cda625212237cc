use lifecycle_runtime::background;

#[background(shutdown)]
async fn serve(port: u16) {
    let _ = port;
}

fn main() {}
