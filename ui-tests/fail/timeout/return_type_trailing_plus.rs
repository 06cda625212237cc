use lifecycle_runtime::{Elapsed, timeout};

// A stray `+` makes the return type a bound list, which the expansion cannot name.
#[timeout("1s")]
async fn load() -> Result<(), Elapsed> + {
    Ok(())
}

fn main() {}
