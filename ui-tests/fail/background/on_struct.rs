use lifecycle_runtime::background;

#[background(interval = "5s", shutdown)]
struct Flusher;

fn main() {
    let _ = Flusher;
}
