//! What the multi-thread benches share.

/// The runtime the spawn and shutdown benches measure on: 2 workers, as in the targets.
pub fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
