//! The shutdown as a snapshot sees it while it goes (what a status page draws as a waterfall):
//! nothing before it starts; during it, the entries known so far and what is still awaited;
//! after it, the report's entries. Looking never takes anything from the report.

mod common;

use std::time::Duration;

use common::{coordinator, settle, within};
use lifecycle_runtime::{Coordinator, EntryKind, Outcome, Readiness};

const LIMIT: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_snapshot_shows_the_shutdown_so_far_and_then_the_report() {
    let coordinator = Coordinator::builder()
        .drain(Duration::from_secs(1))
        .scan_os_threads(false)
        .build();
    within(&coordinator, LIMIT, async {
        assert!(lifecycle_runtime::snapshot().shutdown.is_none());
        lifecycle_runtime::spawn("quick", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        lifecycle_runtime::spawn("slow", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        });
        settle().await;
        let report = tokio::spawn(lifecycle_runtime::shutdown());
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Draining: nothing has ended, both are awaited.
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.readiness, Readiness::Draining);
        let view = snapshot.shutdown.expect("shutdown started");
        assert!(!view.done);
        assert!(view.reason.starts_with("shutdown requested at"), "{view:?}");
        assert_eq!(view.elapsed, Duration::from_millis(500));
        assert_eq!(view.stop_started, None);
        assert!(view.entries.is_empty(), "{view:?}");
        assert!(
            view.waiting_for.contains(&"task quick".to_owned()),
            "{view:?}"
        );
        assert!(
            view.waiting_for.contains(&"task slow".to_owned()),
            "{view:?}"
        );

        // Stopping: the drain and "quick" have their lines; "slow" is awaited.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let view = lifecycle_runtime::snapshot().shutdown.unwrap();
        assert_eq!(view.stop_started, Some(Duration::from_secs(1)), "{view:?}");
        let lines: Vec<(EntryKind, &str)> = view
            .entries
            .iter()
            .map(|entry| (entry.kind(), entry.name()))
            .collect();
        assert_eq!(
            lines,
            [(EntryKind::Drain, "drain"), (EntryKind::Task, "quick")],
            "{view:?}"
        );
        assert_eq!(view.waiting_for, ["task slow"]);
        // Looking twice takes nothing away.
        let again = lifecycle_runtime::snapshot().shutdown.unwrap();
        assert_eq!(again.entries.len(), 2);

        // Done: the report, every line once.
        let report = report.await.unwrap();
        assert!(report.is_clean(), "{report}");
        let names: Vec<&str> = report.entries().iter().map(|entry| entry.name()).collect();
        assert_eq!(names, ["drain", "quick", "slow"], "{report}");
        let view = lifecycle_runtime::snapshot().shutdown.unwrap();
        assert!(view.done && view.waiting_for.is_empty());
        assert_eq!(view.entries.len(), 3);
        assert_eq!(view.entries[2].outcome(), &Outcome::Stopped);
        // And as JSON, the shape a page reads.
        let json = serde_json::to_value(lifecycle_runtime::snapshot()).unwrap();
        let shutdown = &json["shutdown"];
        assert_eq!(shutdown["done"], true);
        assert_eq!(shutdown["budget_secs"], 30.0);
        assert_eq!(shutdown["stop_started_secs"], 1.0);
        assert_eq!(shutdown["entries"][2]["name"], "slow");
        assert_eq!(shutdown["entries"][2]["kind"], "task");
        assert_eq!(shutdown["entries"][2]["start_secs"], 1.0);
    })
    .await;
}

#[tokio::test]
async fn before_shutdown_the_json_says_null() {
    let coordinator = coordinator();
    let json = serde_json::to_value(coordinator.snapshot()).unwrap();
    assert!(json["shutdown"].is_null(), "{json}");
}

/// With a stop order, workers of a stage not told yet are not "awaited": they still work, and the
/// view lists them apart until their stage is told.
#[tokio::test(start_paused = true)]
async fn workers_of_a_stage_not_told_yet_are_listed_apart() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        lifecycle_runtime::stop_after("writer", ["http"]).unwrap();
        lifecycle_runtime::spawn("http", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
        });
        for _ in 0..2 {
            lifecycle_runtime::spawn("writer", async {
                lifecycle_runtime::shutdown_signal().triggered().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            });
        }
        settle().await;
        let report = tokio::spawn(lifecycle_runtime::shutdown());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let view = lifecycle_runtime::snapshot().shutdown.unwrap();
        assert_eq!(view.waiting_for, ["task http"], "{view:?}");
        assert_eq!(view.not_told, ["task writer ×2"], "{view:?}");
        // Once `http` ended, the writers' stage is told: they are awaited.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let view = lifecycle_runtime::snapshot().shutdown.unwrap();
        assert_eq!(view.waiting_for, ["task writer ×2"], "{view:?}");
        assert!(view.not_told.is_empty(), "{view:?}");
        let json = serde_json::to_value(lifecycle_runtime::snapshot()).unwrap();
        assert_eq!(json["shutdown"]["not_told"], serde_json::json!([]));
        let report = report.await.unwrap();
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

/// While a resource closes, the view names it once, as being closed.
#[tokio::test(start_paused = true)]
async fn a_resource_being_closed_is_listed_once_as_closing() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log = common::Log::default();
        let _store = lifecycle_runtime::manage(common::Part::new(
            "store",
            &log,
            common::Behaviour::Slow(Duration::from_millis(800)),
        ));
        let report = tokio::spawn(lifecycle_runtime::shutdown());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let view = lifecycle_runtime::snapshot().shutdown.unwrap();
        assert_eq!(view.waiting_for, ["resource store (closing)"], "{view:?}");
        assert!(report.await.unwrap().is_clean());
    })
    .await;
}
