use lifecycle_runtime::background;

#[background(interval = "5s", shutdown, thread)]
fn count() -> u32 {
    42
}

fn main() {}
