use lifecycle_runtime::background;

// One second past the largest `Duration`: an error, not a panic inside the macro.
#[background(interval = "18446744073709551615s 500ms 500ms", shutdown)]
async fn flush() {}

fn main() {}
