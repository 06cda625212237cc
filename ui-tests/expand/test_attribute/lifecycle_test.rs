//! `#[lifecycle_runtime::test]`, expanded with `--tests` so the test is kept.

#[lifecycle_runtime::test(flavor = "multi_thread", worker_threads = 2, shutdown_timeout = "1s")]
async fn stops_cleanly() {
    let task = lifecycle_runtime::spawn("short", async {});
    assert_eq!(task.await, Ok(()));
}

fn main() {}
