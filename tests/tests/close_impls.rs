//! The `Close` impls the runtime ships: containers, handles, tokens, plain values.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{coordinator, within};
use lifecycle_runtime::{Close, CloseError, NoCleanup};
use tokio_util::sync::CancellationToken;

struct Counted {
    closes: Arc<AtomicU32>,
    fail: bool,
}

impl Close for Counted {
    async fn close(&self) -> Result<(), CloseError> {
        self.closes.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            Err("nope".into())
        } else {
            Ok(())
        }
    }
}

fn counted(closes: &Arc<AtomicU32>, fail: bool) -> Counted {
    Counted {
        closes: closes.clone(),
        fail,
    }
}

#[tokio::test]
async fn containers_close_what_they_hold() {
    let closes = Arc::new(AtomicU32::new(0));
    Some(counted(&closes, false)).close().await.unwrap();
    None::<Counted>.close().await.unwrap();
    Arc::new(counted(&closes, false)).close().await.unwrap();
    assert_eq!(closes.load(Ordering::SeqCst), 2);

    let all = vec![
        counted(&closes, false),
        counted(&closes, true),
        counted(&closes, false),
        counted(&closes, true),
    ];
    let error = all.close().await.unwrap_err();
    assert_eq!(
        closes.load(Ordering::SeqCst),
        6,
        "every element was closed despite failures"
    );
    assert_eq!(error.to_string(), "[1]: nope; [3]: nope");
}

#[derive(Debug)]
struct Config {
    _retries: u32,
}

impl NoCleanup for Config {}

#[tokio::test]
async fn plain_values_close_as_no_ops() {
    Config { _retries: 3 }.close().await.unwrap();
    String::from("name").close().await.unwrap();
    42u64.close().await.unwrap();
    Duration::from_secs(1).close().await.unwrap();
    std::path::PathBuf::from("/tmp").close().await.unwrap();
    assert_eq!(String::from("x").close_name(), "String");
}

#[tokio::test]
async fn a_token_is_cancelled_by_its_close() {
    let token = CancellationToken::new();
    token.close().await.unwrap();
    assert!(token.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn task_handles_are_aborted_and_awaited_by_their_close() {
    let coordinator = coordinator();
    within(&coordinator, Duration::from_secs(60), async {
        let raw = tokio::spawn(std::future::pending::<()>());
        raw.close().await.unwrap();
        assert!(raw.is_finished());

        let tracked = lifecycle_runtime::spawn("pending", std::future::pending::<()>());
        tracked.close().await.unwrap();
        assert!(tracked.is_finished());
        assert_eq!(tracked.close_name(), "pending");
    })
    .await;
}

#[tokio::test]
async fn a_thread_handle_closes_once_its_thread_ended() {
    let coordinator = coordinator();
    let thread = coordinator.spawn_thread("short-lived", |_| {
        std::thread::sleep(Duration::from_millis(20))
    });
    tokio::time::timeout(Duration::from_secs(10), thread.close())
        .await
        .expect("closed within 10s")
        .unwrap();
    assert!(thread.is_finished());
}
