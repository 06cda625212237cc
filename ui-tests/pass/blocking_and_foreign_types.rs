//! What the body checks must not reject: blocking inside `spawn_blocking`, and a parameter whose
//! type is some other crate's `Shutdown` (an ordinary parameter, passed by the caller).

#![deny(warnings, unused_qualifications)]

use std::time::Duration;

use lifecycle_runtime::background;

/// Not the runtime's `Shutdown`: a value of the caller's own.
pub mod protocol {
    /// A "shutdown" message of some wire protocol.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Shutdown {
        /// Its code.
        pub code: u8,
    }
}

/// Blocks, but on tokio's blocking pool, which is where blocking belongs.
#[background(interval = "10ms", shutdown)]
async fn compress(level: u32) {
    let _level = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1));
        level
    })
    .await;
}

/// `protocol::Shutdown` is passed by the caller like any parameter.
#[background(interval = "10ms", shutdown)]
async fn announce(message: protocol::Shutdown) {
    let _code = message.code;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let coordinator = lifecycle_runtime::Coordinator::builder()
        .scan_os_threads(false)
        .build();
    let report = runtime.block_on(coordinator.scope(async {
        let _compress = compress(3);
        let _announce = announce(protocol::Shutdown { code: 1 });
        tokio::time::sleep(Duration::from_millis(30)).await;
        lifecycle_runtime::shutdown().await
    }));
    assert!(report.is_clean(), "{report}");
}

#[test]
fn runs_and_stops_cleanly() {
    main();
}
