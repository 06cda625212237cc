//! The shutdown sequence: budget, drain, stop, close order, report; idempotence and isolation.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Behaviour, Log, Part, coordinator, coordinator_with_budget, entry, push, settle, within,
};
use lifecycle_runtime::{
    Coordinator, EntryKind, Outcome, Readiness, ShutdownReason, TaskError, TaskGroup, background,
};

const LIMIT: Duration = Duration::from_secs(3600);

// ----- close order, containment -----------------------------------------------------------------

#[background(interval = "1s", shutdown = "final_tick", name = "user-of-db")]
async fn uses_db(log: Log, shutdown: lifecycle_runtime::Shutdown) {
    if shutdown.is_triggered() {
        push(&log, "final tick");
    }
}

#[tokio::test(start_paused = true)]
async fn resources_close_newest_first_after_every_task_stopped() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _config = lifecycle_runtime::manage(Part::new("config", &log, Behaviour::Ok));
        let mut db = Part::new("db", &log, Behaviour::Ok);
        db.timeout = Duration::from_millis(1500);
        let _db = lifecycle_runtime::manage(db);
        let mut cache = Part::new("cache", &log, Behaviour::Ok);
        cache.timeout = Duration::MAX;
        let _cache = lifecycle_runtime::manage(cache);
        let _task = uses_db(log.clone());
        settle().await;
        let snapshot = lifecycle_runtime::snapshot();
        let open: Vec<(&str, EntryKind, Option<Duration>)> = snapshot
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.kind, r.close_timeout))
            .collect();
        assert_eq!(
            open,
            [
                ("cache", EntryKind::Resource, None),
                ("db", EntryKind::Resource, Some(Duration::from_millis(1500))),
                ("config", EntryKind::Resource, Some(Duration::from_secs(3))),
            ],
            "listed in closing order, with their limits (none for `cache`)"
        );
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(
            json["resources"][0]["close_timeout_secs"],
            serde_json::Value::Null
        );
        assert_eq!(json["resources"][1]["close_timeout_secs"], 1.5);
        assert_eq!(json["resources"][1]["kind"], "resource");
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            *log.lock().unwrap(),
            ["final tick", "close cache", "close db", "close config"]
        );
        let kinds: Vec<(EntryKind, &str)> = report
            .entries()
            .iter()
            .map(|e| (e.kind(), e.name()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::Task, "user-of-db"),
                (EntryKind::Resource, "cache"),
                (EntryKind::Resource, "db"),
                (EntryKind::Resource, "config"),
            ]
        );
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_close_error_whose_display_panics_is_reported_and_the_rest_still_close() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _pool = lifecycle_runtime::manage(Part::new("pool", &log, Behaviour::Ok));
        let _hostile =
            lifecycle_runtime::manage(Part::new("hostile", &log, Behaviour::FailHostile));
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(*log.lock().unwrap(), ["close hostile", "close pool"]);
        assert_eq!(
            entry(&report, "hostile").outcome(),
            &Outcome::Error("<error display panicked: display of the error exploded>".into())
        );
        assert_eq!(entry(&report, "pool").outcome(), &Outcome::Closed);
        // The report prints, though one of its errors could not be displayed.
        assert!(
            report
                .to_string()
                .contains("ERROR     resource hostile — <error display panicked")
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_early_close_whose_error_display_panics_returns_an_error_to_its_caller() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let hostile = lifecycle_runtime::manage(Part::new("hostile", &log, Behaviour::FailHostile));
        let started = tokio::time::Instant::now();
        let error = hostile.close().await.expect_err("the close failed");
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(
            error.to_string(),
            "<error display panicked: display of the error exploded>"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.entry("hostile").is_none(), "closed early: {report}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_panicking_or_hung_close_is_contained_and_the_rest_still_close() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _a = lifecycle_runtime::manage(Part::new("a", &log, Behaviour::Ok));
        let _hung = lifecycle_runtime::manage(Part::new("hung", &log, Behaviour::Hang));
        let _panics = lifecycle_runtime::manage(Part::new("panics", &log, Behaviour::Panic));
        let _fails = lifecycle_runtime::manage(Part::new("fails", &log, Behaviour::Fail));
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(
            *log.lock().unwrap(),
            ["close fails", "close panics", "close hung", "close a"]
        );
        assert_eq!(
            entry(&report, "fails").outcome(),
            &Outcome::Error("fails refused".into())
        );
        assert_eq!(entry(&report, "panics").outcome(), &Outcome::Panicked);
        assert_eq!(entry(&report, "panics").detail(), Some("panics blew up"));
        let hung = entry(&report, "hung");
        assert_eq!(hung.outcome(), &Outcome::TimedOut);
        assert_eq!(
            hung.elapsed(),
            Duration::from_secs(3),
            "its own close timeout"
        );
        assert_eq!(entry(&report, "a").outcome(), &Outcome::Closed);
        assert_eq!(report.problems().count(), 3);
        let text = report.to_string();
        assert!(
            text.contains("ERROR     resource fails — fails refused"),
            "{text}"
        );
        assert!(
            text.contains("PANICKED  resource panics — panics blew up"),
            "{text}"
        );
        assert!(
            text.contains("TIMED OUT resource hung — did not close within 3s"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn early_close_is_idempotent_and_shutdown_skips_it() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let resource = Part::new("early", &log, Behaviour::Ok);
        let closes = resource.closes.clone();
        let managed = lifecycle_runtime::manage(resource);
        let clone = managed.clone();
        assert_eq!(managed.name, "early", "Deref reaches the value");
        managed.close().await.unwrap();
        clone.close().await.unwrap();
        assert!(clone.is_closed());
        assert!(lifecycle_runtime::snapshot().resources.is_empty());
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(closes.load(Ordering::SeqCst), 1, "closed exactly once");
        assert!(report.entry("early").is_none(), "{report}");
    })
    .await;
}

// ----- budget -----------------------------------------------------------------------------------

#[background(interval = "1s", shutdown, stop_timeout = "2s")]
async fn stubborn_loop() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[background(interval = "1s", shutdown, stop_timeout = "5s")]
async fn very_stubborn_loop() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_a_hung_entry_and_skips_what_it_cannot_reach() {
    let coordinator = coordinator_with_budget(Duration::from_secs(4));
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _first = lifecycle_runtime::manage(Part::new("registered-first", &log, Behaviour::Ok));
        let mut hung = Part::new("hung-close", &log, Behaviour::Hang);
        hung.timeout = Duration::from_secs(10);
        let _hung = lifecycle_runtime::manage(hung);
        let _task = stubborn_loop();
        settle().await;
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());

        let task = entry(&report, "stubborn_loop");
        assert_eq!(task.outcome(), &Outcome::Aborted, "{report}");
        assert_eq!(
            task.elapsed(),
            Duration::from_secs(2),
            "its own stop timeout"
        );
        assert!(
            task.detail().unwrap().contains("whole stop timeout of 2s"),
            "{report}"
        );
        // 10s of its own, but only what is left of the 4s budget.
        let hung = entry(&report, "hung-close");
        assert_eq!(hung.outcome(), &Outcome::TimedOut, "{report}");
        assert!(
            hung.detail().unwrap().contains("by the shutdown budget"),
            "{report}"
        );
        assert!(hung.elapsed() <= Duration::from_secs(2), "{report}");
        let skipped = entry(&report, "registered-first");
        assert_eq!(skipped.outcome(), &Outcome::Skipped, "{report}");
        assert_eq!(report.elapsed(), Duration::from_secs(4), "{report}");
        assert_eq!(
            *log.lock().unwrap(),
            ["close hung-close"],
            "the skipped resource was never called"
        );
    })
    .await;
}

/// A resource that says what it holds when shutdown has no time left to close it.
struct Outbox {
    name: &'static str,
    unsent: u32,
}

impl lifecycle_runtime::Close for Outbox {
    async fn close(&self) -> Result<(), lifecycle_runtime::CloseError> {
        Ok(())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        self.name.into()
    }

    fn unclosed_detail(&self) -> Option<String> {
        assert!(self.unsent > 0, "a unclosed_detail that panics");
        Some(format!("{} messages unsent", self.unsent))
    }
}

#[tokio::test(start_paused = true)]
async fn a_skipped_resource_still_says_what_it_holds() {
    let coordinator = coordinator_with_budget(Duration::from_secs(1));
    within(&coordinator, LIMIT, async {
        let _outbox = lifecycle_runtime::manage(Outbox {
            name: "outbox",
            unsent: 3,
        });
        let _broken = lifecycle_runtime::manage(Outbox {
            name: "broken",
            unsent: 0,
        });
        let _task = very_stubborn_loop();
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        let outbox = entry(&report, "outbox");
        assert_eq!(outbox.outcome(), &Outcome::Skipped, "{report}");
        assert_eq!(
            outbox.detail(),
            Some("shutdown budget exhausted before it could close; 3 messages unsent"),
            "{report}"
        );
        let broken = entry(&report, "broken");
        assert_eq!(broken.outcome(), &Outcome::Skipped, "{report}");
        assert_eq!(
            broken.detail(),
            Some(
                "shutdown budget exhausted before it could close; its `unclosed_detail` panicked: a unclosed_detail that panics"
            ),
            "{report}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_stop_timeout_outlasts_the_budget_is_aborted_when_the_budget_ends() {
    let coordinator = coordinator_with_budget(Duration::from_secs(1));
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _db = lifecycle_runtime::manage(Part::new("db", &log, Behaviour::Ok));
        let _task = very_stubborn_loop();
        settle().await;
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        let task = entry(&report, "very_stubborn_loop");
        assert_eq!(task.outcome(), &Outcome::Aborted, "{report}");
        assert_eq!(task.elapsed(), Duration::from_secs(1));
        assert!(
            task.detail()
                .unwrap()
                .contains("when the shutdown budget ran out (its own stop timeout is 5s)"),
            "{report}"
        );
        assert_eq!(
            entry(&report, "db").outcome(),
            &Outcome::Skipped,
            "{report}"
        );
        assert!(log.lock().unwrap().is_empty());
        // Never waited on beyond the budget, but for the least grace an abort needs.
        assert!(report.elapsed() <= Duration::from_millis(1005), "{report}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn drain_waits_with_readiness_false_before_tasks_hear_shutdown() {
    let coordinator = Coordinator::builder()
        .scan_os_threads(false)
        .drain(Duration::from_secs(2))
        .build();
    within(&coordinator, LIMIT, async {
        let heard_at = Arc::new(Mutex::new(None));
        let start = tokio::time::Instant::now();
        let shutdown = lifecycle_runtime::shutdown_signal();
        let heard = heard_at.clone();
        let _listener = lifecycle_runtime::spawn("listener", async move {
            shutdown.triggered().await;
            *heard.lock().unwrap() = Some(start.elapsed());
        });
        settle().await;
        assert_eq!(
            lifecycle_runtime::snapshot().readiness,
            Readiness::Starting,
            "not ready until the program says so"
        );
        assert!(!lifecycle_runtime::snapshot().ready);
        lifecycle_runtime::mark_ready();
        assert!(lifecycle_runtime::snapshot().ready);
        lifecycle_runtime::trigger_shutdown();
        let snapshot = lifecycle_runtime::snapshot();
        assert!(!snapshot.ready, "not ready from the trigger on");
        assert_eq!(snapshot.readiness, Readiness::Draining);
        lifecycle_runtime::mark_ready();
        assert!(
            !lifecycle_runtime::snapshot().ready,
            "marking it ready during shutdown changes nothing"
        );
        assert!(coordinator.is_shutting_down());
        assert!(
            !lifecycle_runtime::shutdown_signal().is_triggered(),
            "tasks keep serving during the drain"
        );
        let report = coordinator.report().await;
        assert_eq!(*heard_at.lock().unwrap(), Some(Duration::from_secs(2)));
        let drain = entry(&report, "drain");
        assert_eq!(
            (drain.kind(), drain.outcome(), drain.elapsed()),
            (EntryKind::Drain, &Outcome::Drained, Duration::from_secs(2))
        );
        assert_eq!(entry(&report, "listener").start(), Duration::from_secs(2));
        assert!(report.is_clean(), "{report}");
        assert_eq!(lifecycle_runtime::snapshot().readiness, Readiness::Stopped);
    })
    .await;
}

/// The phases a probe sees, in order: starting, ready, draining (the drain runs, tasks still
/// serve), stopping (tasks told to stop, resources closing), stopped.
#[tokio::test(start_paused = true)]
async fn readiness_goes_through_its_phases_in_order() {
    let coordinator = Coordinator::builder()
        .scan_os_threads(false)
        .drain(Duration::from_secs(1))
        .build();
    within(&coordinator, LIMIT, async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // A resource that records what a probe would answer while it closes.
        struct Probe(Arc<Mutex<Vec<Readiness>>>);
        impl lifecycle_runtime::Close for Probe {
            async fn close(&self) -> Result<(), lifecycle_runtime::CloseError> {
                self.0
                    .lock()
                    .unwrap()
                    .push(lifecycle_runtime::snapshot().readiness);
                Ok(())
            }
        }
        let _probe = lifecycle_runtime::manage(Probe(seen.clone()));
        let shutdown = lifecycle_runtime::shutdown_signal();
        let heard = seen.clone();
        let _listener = lifecycle_runtime::spawn("listener", async move {
            shutdown.triggered().await;
            heard
                .lock()
                .unwrap()
                .push(lifecycle_runtime::snapshot().readiness);
        });
        settle().await;
        seen.lock().unwrap().push(coordinator.readiness());
        lifecycle_runtime::mark_ready();
        seen.lock().unwrap().push(coordinator.readiness());
        coordinator.trigger_shutdown();
        seen.lock().unwrap().push(coordinator.readiness());
        let report = coordinator.report().await;
        assert!(report.is_clean(), "{report}");
        seen.lock().unwrap().push(coordinator.readiness());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                Readiness::Starting,
                Readiness::Ready,
                Readiness::Draining,
                // The listener hears the stop signal, then the resource closes.
                Readiness::Stopping,
                Readiness::Stopping,
                Readiness::Stopped,
            ]
        );
        let json = serde_json::to_value(lifecycle_runtime::snapshot()).unwrap();
        assert_eq!(json["readiness"], "stopped");
        assert_eq!(json["ready"], false);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_drain_longer_than_the_budget_is_cut_short_and_reported() {
    let coordinator = Coordinator::builder()
        .scan_os_threads(false)
        .drain(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(1))
        .build();
    within(&coordinator, LIMIT, async {
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        let drain = entry(&report, "drain");
        assert_eq!(drain.outcome(), &Outcome::Skipped);
        assert_eq!(drain.elapsed(), Duration::from_secs(1));
        assert!(!report.is_clean());
    })
    .await;
}

// ----- idempotence ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn shutdown_twice_or_concurrently_yields_one_report() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let resource = Part::new("slow", &log, Behaviour::Slow(Duration::from_millis(700)));
        let closes = resource.closes.clone();
        let _slow = lifecycle_runtime::manage(resource);
        let started = tokio::time::Instant::now();
        let first_line = line!() + 1;
        let (a, b) = tokio::join!(lifecycle_runtime::shutdown(), lifecycle_runtime::shutdown());
        lifecycle_tests::record_fault_time(started.elapsed());
        let c = lifecycle_runtime::shutdown().await;
        let d = coordinator.report().await;
        assert_eq!(closes.load(Ordering::SeqCst), 1, "the sequence ran once");
        let json = |r: &lifecycle_runtime::ShutdownReport| serde_json::to_value(r).unwrap();
        assert_eq!(json(&a), json(&b));
        assert_eq!(json(&a), json(&c));
        assert_eq!(json(&a), json(&d));
        assert_eq!(a.elapsed(), Duration::from_millis(700));
        match a.reason() {
            ShutdownReason::Requested { location } => {
                assert!(location.file().ends_with("sequence.rs"));
                assert_eq!(location.line(), first_line, "the first caller is named");
            }
            other => panic!("unexpected reason {other:?}"),
        }
    })
    .await;
}

#[test]
fn trigger_shutdown_works_from_a_plain_thread() {
    let _watchdog = common::Watchdog::new(
        "trigger_shutdown_works_from_a_plain_thread",
        Duration::from_secs(30),
    );
    let coordinator = coordinator();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let shutdown = coordinator.shutdown_signal();
    let task = {
        let _runtime = runtime.enter();
        coordinator.spawn("waits", async move {
            shutdown.triggered().await;
            flag.store(true, Ordering::SeqCst);
        })
    };
    // No runtime context here: the coordinator runs its sequence on the runtime it has seen.
    let trigger = coordinator.clone();
    std::thread::spawn(move || {
        let _guard = trigger.enter();
        lifecycle_runtime::trigger_shutdown();
    })
    .join()
    .unwrap();
    let report = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), coordinator.report())
            .await
            .unwrap()
    });
    assert!(stopped.load(Ordering::SeqCst));
    assert!(report.is_clean(), "{report}");
    assert!(
        report.reason().to_string().contains("sequence.rs"),
        "{report}"
    );
    assert_eq!(runtime.block_on(task), Ok(()));
}

// ----- isolation --------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn coordinators_do_not_see_each_others_tasks() {
    let first = coordinator();
    let second = coordinator();
    let first_task = first.spawn("in-first", std::future::pending::<()>());
    let second_stopped = Arc::new(AtomicBool::new(false));
    let flag = second_stopped.clone();
    let second_shutdown = second.shutdown_signal();
    let _second_task = second.spawn("in-second", async move {
        second_shutdown.triggered().await;
        flag.store(true, Ordering::SeqCst);
    });
    settle().await;
    let names = |c: &Coordinator| {
        c.snapshot()
            .tasks
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), ["in-first"]);
    assert_eq!(names(&second), ["in-second"]);

    let report = first.shutdown().await;
    assert_eq!(entry(&report, "in-first").outcome(), &Outcome::Aborted);
    assert!(report.entry("in-second").is_none());
    assert!(!second.is_shutting_down());
    settle().await;
    assert!(
        !second_stopped.load(Ordering::SeqCst),
        "the second coordinator's task still runs"
    );
    assert!(first_task.await.is_err());
    let report = second.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert!(second_stopped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn tasks_spawned_inside_a_task_stay_with_its_coordinator() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _parent = lifecycle_runtime::spawn("parent", async {
            let _child = lifecycle_runtime::spawn("child", async {
                lifecycle_runtime::shutdown_signal().triggered().await;
            });
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        settle().await;
        let mut names: Vec<String> = lifecycle_runtime::snapshot()
            .tasks
            .into_iter()
            .map(|t| t.name)
            .collect();
        names.sort();
        assert_eq!(names, ["child", "parent"]);
        assert!(
            Coordinator::global()
                .snapshot()
                .tasks
                .iter()
                .all(|t| t.name != "child")
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

// ----- tasks ------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn tasks_of_one_name_fold_into_one_entry_with_a_count() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        for n in 0..1000u64 {
            let _conn = lifecycle_runtime::spawn("conn", async move {
                lifecycle_runtime::shutdown_signal().triggered().await;
                tokio::time::sleep(Duration::from_millis(n % 10)).await;
            });
        }
        let _stuck = lifecycle_runtime::spawn("conn", std::future::pending::<()>());
        assert!(
            lifecycle_runtime::snapshot().starting > 0,
            "spawned, not yet polled"
        );
        common::all_started().await;
        assert_eq!(lifecycle_runtime::snapshot().tasks.len(), 1001);
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(report.entries().len(), 2, "{report}");
        let stopped = &report.entries()[0];
        assert_eq!(
            (stopped.name(), stopped.count(), stopped.outcome()),
            ("conn", 1000, &Outcome::Stopped)
        );
        assert_eq!(
            stopped.elapsed(),
            Duration::from_millis(9),
            "the longest of them"
        );
        let aborted = &report.entries()[1];
        assert_eq!((aborted.count(), aborted.outcome()), (1, &Outcome::Aborted));
        assert!(report.to_string().contains("task conn ×1000"), "{report}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_is_caught_logged_counted_and_returned() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let task = lifecycle_runtime::spawn("explodes", async {
            panic!("kaboom");
        });
        assert_eq!(
            task.await,
            Err(TaskError::Panicked {
                task: "explodes".into(),
                message: "kaboom".to_owned()
            })
        );
        let during = lifecycle_runtime::spawn("explodes-at-shutdown", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
            panic!("while stopping");
        });
        settle().await;
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.counters.panicked, 1);
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        let entry = entry(&report, "explodes-at-shutdown");
        assert_eq!(entry.outcome(), &Outcome::Panicked);
        assert_eq!(entry.detail(), Some("while stopping"));
        assert!(during.await.is_err());
        assert_eq!(coordinator.snapshot().counters.panicked, 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn snapshot_counts_and_describes_what_runs() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let done = lifecycle_runtime::spawn("quick", async { 1 });
        assert_eq!(done.await, Ok(1));
        let cancelled = lifecycle_runtime::spawn("cancelled", std::future::pending::<()>());
        cancelled.abort();
        assert!(matches!(cancelled.await, Err(TaskError::Cancelled { .. })));
        let _idle = waits_for_ticks();
        settle().await;
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.counters.spawned, 3);
        assert_eq!(snapshot.counters.completed, 1);
        assert_eq!(snapshot.counters.cancelled, 1);
        assert_eq!(snapshot.tasks.len(), 1);
        assert_eq!(snapshot.tasks[0].state, lifecycle_runtime::TaskState::Idle);
        assert_eq!(snapshot.tasks[0].ticks, 1);
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["tasks"][0]["state"], "idle");
        assert_eq!(json["ready"], false, "not marked ready");
        assert_eq!(json["readiness"], "starting");
        lifecycle_runtime::mark_ready();
        let json = serde_json::to_value(lifecycle_runtime::snapshot()).unwrap();
        assert_eq!(
            (&json["ready"], &json["readiness"]),
            (&true.into(), &"ready".into())
        );
        lifecycle_runtime::shutdown().await;
    })
    .await;
}

#[background(interval = "1h", shutdown)]
async fn waits_for_ticks() {}

// ----- groups -----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_group_caps_concurrency_and_times_out_long_tasks() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let group = TaskGroup::new("uploads")
            .max_concurrent(2)
            .timeout(Duration::from_secs(1));
        let running = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..6u64)
            .map(|n| {
                let running = running.clone();
                let peak = peak.clone();
                group.spawn("upload", async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Upload 5 takes too long.
                    let took = if n == 5 { 3000 } else { 200 };
                    tokio::time::sleep(Duration::from_millis(took)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    n
                })
            })
            .collect();
        settle().await;
        assert_eq!(group.in_use(), 2);
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await);
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(&results[..5], &[Ok(0), Ok(1), Ok(2), Ok(3), Ok(4)]);
        assert_eq!(
            results[5].as_ref().unwrap_err().to_string(),
            "task `upload` timed out after 1s (limit of group `uploads`)"
        );
        assert_eq!(lifecycle_runtime::snapshot().counters.timed_out, 1);
        lifecycle_runtime::shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn tasks_waiting_for_a_group_slot_at_shutdown_never_start_and_are_reported() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let group = TaskGroup::new("exports").max_concurrent(1);
        let started = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let started = started.clone();
                group.spawn("export", async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                })
            })
            .collect();
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await);
        }
        assert_eq!(results[0], Ok(()));
        assert!(
            matches!(&results[1], Err(TaskError::NotStarted { group, .. }) if group == "exports")
        );
        let skipped = report
            .entries()
            .iter()
            .find(|e| e.outcome() == &Outcome::Skipped)
            .unwrap();
        assert_eq!((skipped.name(), skipped.count()), ("export", 2));
        assert!(skipped.detail().unwrap().contains("group `exports`"));
    })
    .await;
}

#[test]
fn a_zero_group_cap_is_refused_with_the_groups_name() {
    let coordinator = coordinator();
    let _guard = coordinator.enter();
    let refused = std::panic::catch_unwind(|| TaskGroup::new("imports").max_concurrent(0));
    let message = refused.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("TaskGroup `imports`: max_concurrent must be at least 1"),
        "{message}"
    );
}

// ----- a task stuck in synchronous code ---------------------------------------------------------

/// Runs `body` on a 2-worker runtime in a coordinator with a 5s budget and shuts down after 50ms;
/// returns the report and how long `shutdown()` took, measured from outside.
fn shutdown_with_a_blocker(
    body: impl std::future::Future<Output = ()> + Send + 'static,
) -> (lifecycle_runtime::ShutdownReport, Duration) {
    let coordinator = Coordinator::builder()
        .scan_os_threads(false)
        .shutdown_timeout(Duration::from_secs(5))
        .build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(coordinator.scope(async move {
        let _blocker = lifecycle_runtime::spawn("blocks-in-sync-code", body);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        (report, started.elapsed())
    }));
    runtime.shutdown_background();
    report
}

/// The default stop timeout (2s) plus the abort grace (up to 100ms): what a blocked task may
/// hold shutdown up for.
const BLOCKED_PROMISE: Duration = Duration::from_millis(2100);

/// Asserts shutdown waited out the default stop timeout and no more than the promise (with some
/// slack for a loaded machine), measured from outside; the report agrees.
fn assert_held_up_only_for_the_promise(report: &lifecycle_runtime::ShutdownReport, took: Duration) {
    assert!(
        took >= Duration::from_secs(2),
        "gave up before the default stop timeout ({took:?}): {report}"
    );
    assert!(
        took < BLOCKED_PROMISE + Duration::from_millis(400),
        "held shutdown up for {took:?}, more than 2s + 100ms: {report}"
    );
    assert!(
        report.elapsed() <= took,
        "reported {:?}, measured {took:?}: {report}",
        report.elapsed()
    );
}

#[test]
fn a_task_blocking_its_thread_is_reported_as_leaked_without_holding_shutdown_up() {
    let _watchdog = common::Watchdog::new("a_task_blocking_its_thread", Duration::from_secs(30));
    let release = Arc::new(AtomicBool::new(false));
    let blocked = release.clone();
    let (report, took) = shutdown_with_a_blocker(async move {
        tokio::task::yield_now().await;
        // From here on it never yields: an abort cannot take effect.
        while !blocked.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    release.store(true, Ordering::SeqCst);
    lifecycle_tests::record_fault_time(took);
    let stuck = entry(&report, "blocks-in-sync-code");
    assert_eq!(stuck.outcome(), &Outcome::Leaked, "{report}");
    // Blocked in a poll, it never saw its abort: not "blocked in its destructor".
    assert_eq!(
        stuck.detail(),
        Some(
            "aborted, but never polled again: its worker thread is blocked in synchronous code (by this task or another)"
        ),
        "{report}"
    );
    assert_held_up_only_for_the_promise(&report, took);
}

#[test]
fn a_task_that_blocks_in_its_first_poll_is_reported_unnamed_without_holding_shutdown_up() {
    let _watchdog = common::Watchdog::new(
        "a_task_that_blocks_in_its_first_poll",
        Duration::from_secs(30),
    );
    let release = Arc::new(AtomicBool::new(false));
    let blocked = release.clone();
    let (report, took) = shutdown_with_a_blocker(async move {
        // Never yields at all, so it never told the registry its name.
        while !blocked.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    release.store(true, Ordering::SeqCst);
    lifecycle_tests::record_fault_time(took);
    let stuck = entry(&report, "(unnamed: blocked in its first poll)");
    assert_eq!(stuck.outcome(), &Outcome::Leaked, "{report}");
    assert!(
        stuck
            .detail()
            .unwrap()
            .starts_with("1 task(s) never returned from their first poll"),
        "{report}"
    );
    assert_held_up_only_for_the_promise(&report, took);
}
