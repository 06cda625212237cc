use lifecycle_runtime::background;

// An interval loop already goes on after a failing tick: nothing to restart.
#[background(interval = "1s", shutdown, restart = "on_failure")]
async fn poll() -> Result<(), String> {
    Ok(())
}

fn main() {}
