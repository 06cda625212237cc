//! Races and edge cases of the shutdown sequence: configuration at the limits, panics where no
//! guard was, closes cancelled or overlapping with shutdown, workers that register late, and
//! runtimes that go away. Each test pins down behaviour that once failed.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::{
    Behaviour, Log, Part, Watchdog, coordinator, coordinator_with_budget, push, settle, within,
};
use lifecycle_runtime::{Close, CloseError, Coordinator, Outcome, Shutdown, TaskGroup, background};

const LIMIT: Duration = Duration::from_secs(3600);

// ----- a budget too large for `Instant` means "no limit", not a panic ----------------------------

#[tokio::test]
async fn a_huge_budget_still_produces_a_report() {
    let _watchdog = Watchdog::new(
        "a_huge_budget_still_produces_a_report",
        Duration::from_secs(60),
    );
    // "No budget" written the obvious way. The same happens with
    // LIFECYCLE_SHUTDOWN_TIMEOUT=500000000000years, which humantime accepts.
    let coordinator = coordinator_with_budget(Duration::MAX);
    // A task to stop and a resource to close: each computes a deadline from the budget.
    let log: Log = Arc::default();
    let _db = coordinator.manage(Part::new("db", &log, Behaviour::Ok));
    coordinator
        .scope(async {
            // Detached: it runs on, tracked, until shutdown stops it.
            drop(lifecycle_runtime::spawn("listener", async {
                lifecycle_runtime::shutdown_signal().triggered().await;
            }));
            settle().await;
        })
        .await;
    let report = tokio::time::timeout(Duration::from_secs(5), coordinator.shutdown()).await;
    let report = report.expect("shutdown().await never returned: the budget arithmetic panicked");
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        common::entry(&report, "listener").outcome(),
        &Outcome::Stopped
    );
    assert_eq!(common::entry(&report, "db").outcome(), &Outcome::Closed);
    assert_eq!(report.entries().len(), 2, "{report}");
    assert_eq!(common::lines(&log), ["close db"]);
}

// ----- a `Close` impl that panics before returning its future is contained -----------------------

struct PanicsBeforeItsFuture;

impl Close for PanicsBeforeItsFuture {
    // A hand-written impl may run code before building its future (say, lock a poisoned mutex).
    fn close(&self) -> impl Future<Output = Result<(), CloseError>> + Send {
        panic!("state mutex poisoned");
        #[allow(unreachable_code)]
        async {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_close_that_panics_synchronously_is_contained() {
    let _watchdog = Watchdog::new(
        "a_close_that_panics_synchronously_is_contained",
        Duration::from_secs(60),
    );
    let coordinator = coordinator();
    let _resource = coordinator.manage(PanicsBeforeItsFuture);
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(5), coordinator.shutdown()).await;
    lifecycle_tests::record_fault_time(started.elapsed());
    let report = report.expect(
        "shutdown().await never returned: the panic escaped close_for_shutdown and killed the sequence",
    );
    assert_eq!(
        report
            .entry("PanicsBeforeItsFuture")
            .map(|e| e.outcome().clone()),
        Some(Outcome::Panicked),
        "{report}"
    );
}

// ----- an early close that is cancelled gives the resource back to shutdown ----------------------

#[tokio::test(start_paused = true)]
async fn a_cancelled_early_close_is_still_closed_or_reported_by_shutdown() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let db = lifecycle_runtime::manage(Part::new(
            "db",
            &log,
            Behaviour::Slow(Duration::from_secs(1)),
        ));
        // The caller gives up on the early close (a select!, a timeout, or its task is aborted by
        // shutdown after its stop timeout).
        assert!(
            tokio::time::timeout(Duration::from_millis(10), db.close())
                .await
                .is_err()
        );
        let report = lifecycle_runtime::shutdown().await;
        let entry = report.entry("db").unwrap_or_else(|| {
            panic!(
                "db's close never completed, yet it is neither closed by shutdown nor in the \
                 report (is_closed() = {}):\n{report}",
                db.is_closed()
            )
        });
        assert_eq!(entry.outcome(), &Outcome::Closed, "{report}");
        assert!(db.is_closed());
        assert_eq!(report.entries().len(), 1, "{report}");
        // The 1s close ran to its end (from the early call or anew), once it was given up on.
        assert!(
            entry.elapsed() >= Duration::from_millis(990)
                && entry.elapsed() <= Duration::from_secs(1),
            "{report}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_resource_whose_early_close_shutdown_aborted_is_still_closed_or_reported() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let db = lifecycle_runtime::manage(Part::new(
            "db",
            &log,
            Behaviour::Slow(Duration::from_millis(2500)),
        ));
        // The usual "close what I own when told to stop" service. Its close (2.5 s, within db's
        // own 3 s limit) outlasts its 2 s stop timeout, so step 3 aborts it mid-close.
        let owner = db.clone();
        let _service = lifecycle_runtime::spawn("db-owner", async move {
            lifecycle_runtime::shutdown_signal().triggered().await;
            owner.close().await
        });
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        let entry = report.entry("db").unwrap_or_else(|| {
            panic!(
                "db's close was cut off by the abort of `db-owner`; step 4 neither closed it nor \
                 listed it:\n{report}"
            )
        });
        assert_eq!(entry.outcome(), &Outcome::Closed, "{report}");
        assert!(db.is_closed());
        assert_eq!(
            common::entry(&report, "db-owner").outcome(),
            &Outcome::Aborted,
            "{report}"
        );
        assert_eq!(report.entries().len(), 2, "{report}");
        // Closed by step 4, after the abort at 2s, taking its whole 2.5s again.
        assert_eq!(report.elapsed(), Duration::from_millis(4500), "{report}");
    })
    .await;
}

// ----- an early close under way when shutdown reaches the resource is waited for -----------------

/// Logs the start and the end of its close.
struct Logged {
    name: &'static str,
    log: Log,
    takes: Duration,
}

impl Close for Logged {
    async fn close(&self) -> Result<(), CloseError> {
        push(&self.log, format!("close {} begins", self.name));
        tokio::time::sleep(self.takes).await;
        push(&self.log, format!("close {} ends", self.name));
        Ok(())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        self.name.into()
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_an_early_close_under_way_before_closing_what_it_depends_on() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let logged = |name, takes| Logged {
            name,
            log: log.clone(),
            takes,
        };
        // `cache` was registered after `db`, so it depends on it: db must close after cache.
        let _db = lifecycle_runtime::manage(logged("db", Duration::ZERO));
        let cache = lifecycle_runtime::manage(logged("cache", Duration::from_millis(500)));
        // Someone closes the cache early, concurrently with shutdown.
        let early = tokio::spawn(async move { cache.close().await });
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        early.await.unwrap().unwrap();
        let cache = common::entry(&report, "cache");
        assert_eq!(cache.outcome(), &Outcome::Closed, "{report}");
        assert!(
            cache
                .detail()
                .is_some_and(|detail| detail.contains("closed through its handle")),
            "{report}"
        );
        let lines = common::lines(&log);
        let cache_ends = lines.iter().position(|l| l == "close cache ends");
        let db_begins = lines.iter().position(|l| l == "close db begins");
        assert!(
            cache_ends < db_begins,
            "db closed while the cache (which depends on it) was still closing: {lines:?}\n{report}"
        );
    })
    .await;
}

// ----- a thread name with a NUL byte registers nothing -------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_thread_that_never_started_is_not_reported_leaked() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let spawned = std::panic::catch_unwind(|| {
            lifecycle_runtime::spawn_thread(String::from("bad\0name"), |_shutdown| ())
        });
        assert!(
            spawned.is_err(),
            "std refuses a thread name with a NUL byte"
        );
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        assert!(
            report.is_clean() && report.entries().is_empty(),
            "no thread was started, yet after {:?} the report says:\n{report}",
            started.elapsed()
        );
    })
    .await;
}

// ----- a group's `waiting` count drops when a waiter is cancelled --------------------------------

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_no_longer_counts_as_waiting() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let group = TaskGroup::new("g").max_concurrent(1);
        let _holder = group.spawn("holder", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        let waiter = group.spawn("waiter", async {});
        settle().await;
        let waiting = |snapshot: lifecycle_runtime::Snapshot| {
            snapshot
                .groups
                .iter()
                .find(|g| g.name == "g")
                .map(|g| g.waiting)
        };
        assert_eq!(waiting(lifecycle_runtime::snapshot()), Some(1));
        waiter.abort();
        assert!(waiter.await.is_err());
        settle().await;
        assert_eq!(
            waiting(lifecycle_runtime::snapshot()),
            Some(0),
            "the aborted waiter is still counted as waiting"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            common::entry(&report, "holder").outcome(),
            &Outcome::Stopped,
            "{report}"
        );
        // Aborted by its caller before it ever ran: nothing of it is left to stop.
        assert!(report.entry("waiter").is_none(), "{report}");
        assert_eq!(report.entries().len(), 1, "{report}");
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

// ----- a task that registers during step 3 is held to its own stop timeout -----------------------

#[background(shutdown, stop_timeout = "10s", name = "slow-service")]
async fn slow_service(shutdown: Shutdown) {
    shutdown.triggered().await;
    // On shutdown it hands work to a helper task (which, like many, ignores shutdown)...
    tokio::time::sleep(Duration::from_millis(100)).await;
    lifecycle_runtime::spawn("late-helper", std::future::pending::<()>());
    // ...and takes a while, within its own 10 s stop timeout, to finish.
    tokio::time::sleep(Duration::from_secs(9)).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_registering_during_step_3_is_aborted_at_its_own_stop_timeout() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _service = slow_service();
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        let late = common::entry(&report, "late-helper");
        assert_eq!(late.outcome(), &Outcome::Aborted, "{report}");
        // Registered 100 ms after the stop signal, it gets its whole 2 s from then.
        assert!(
            (Duration::from_millis(2100)..=Duration::from_millis(2150)).contains(&late.elapsed()),
            "late-helper has a 2 s stop timeout but was aborted {:?} after the stop signal:\n{report}",
            late.elapsed()
        );
    })
    .await;
}

// ----- a trigger from a plain thread after the remembered runtime is gone still reports ----------

#[test]
fn a_trigger_after_the_first_runtime_is_gone_still_produces_a_report() {
    let _watchdog = Watchdog::new(
        "a_trigger_after_the_first_runtime_is_gone_still_produces_a_report",
        Duration::from_secs(60),
    );
    let coordinator: Coordinator = coordinator();
    let log: Log = Arc::default();
    let _db = coordinator.manage(Part::new("db", &log, Behaviour::Ok));
    {
        // The coordinator remembers the first runtime it sees.
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        first.block_on(coordinator.scope(async {
            lifecycle_runtime::spawn("short", async {}).await.unwrap();
        }));
    }
    // From a plain thread (a signal handler thread, say). Had the sequence been spawned onto the
    // dead runtime it would be dropped at once; the `report()` caller must then run it itself.
    coordinator.trigger_shutdown();
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = second.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), coordinator.report()).await
    });
    let report = report.expect(
        "report() never returned: the sequence was spawned on a runtime that no longer exists",
    );
    // The sequence really ran: it closed the resource.
    assert!(
        matches!(
            report.reason(),
            lifecycle_runtime::ShutdownReason::Requested { .. }
        ),
        "{report}"
    );
    assert_eq!(common::entry(&report, "db").outcome(), &Outcome::Closed);
    assert_eq!(common::lines(&log), ["close db"]);
}

// ----- a task that registers during the abort grace is judged on its own -------------------------

/// Emulates async drop: releasing it spawns a tracked cleanup task (a common pattern for
/// connection guards).
struct SpawnsCleanupOnDrop;

impl Drop for SpawnsCleanupOnDrop {
    fn drop(&mut self) {
        lifecycle_runtime::spawn("cleanup", tokio::time::sleep(Duration::from_millis(300)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_registering_during_the_abort_grace_is_not_called_stuck() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _connection = lifecycle_runtime::spawn("connection", async {
            let _guard = SpawnsCleanupOnDrop;
            std::future::pending::<()>().await;
        });
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        // `connection` is aborted at 2 s; dropping it spawns `cleanup`, which registers during the
        // 100 ms abort grace. It was never told anything or aborted, and it is not blocking.
        let connection = common::entry(&report, "connection");
        assert_eq!(connection.outcome(), &Outcome::Aborted, "{report}");
        assert_eq!(connection.elapsed(), Duration::from_secs(2), "{report}");
        // It registered (the race is about that) and was waited for: it ends by itself 300ms
        // after it started, and is reported stopped, not LEAKED.
        let cleanup = report.entry("cleanup").unwrap_or_else(|| {
            panic!("cleanup never registered: the race was not exercised:\n{report}")
        });
        assert_eq!(
            cleanup.outcome(),
            &Outcome::Stopped,
            "cleanup was judged without being signalled or aborted:\n{report}"
        );
        assert_eq!(report.elapsed(), Duration::from_millis(2300), "{report}");
        assert_eq!(report.entries().len(), 2, "{report}");
    })
    .await;
}

// ----- a task of the global coordinator stays in it on an entered thread -------------------------

#[test]
fn a_global_task_spawns_into_the_global_coordinator_on_an_entered_thread() {
    let other = coordinator();
    // `enter` is for synchronous code on this thread; the runtime below then runs here.
    let _entered = other.enter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let parent = Coordinator::global().spawn("global-parent", async {
            // Inherits its spawner's scope (the global coordinator), per DESIGN.md.
            lifecycle_runtime::spawn("child", async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        });
        parent.await.unwrap();
        settle().await;
        let in_other: Vec<String> = other.snapshot().tasks.into_iter().map(|t| t.name).collect();
        assert!(
            in_other.is_empty(),
            "a task of the global coordinator spawned {in_other:?} into the thread's coordinator"
        );
    });
}

// ----- loops registering while `signal_stop` walks the registry are all woken --------------------

#[background(interval = "1h", shutdown, name = "idle-loop")]
async fn idle_loop() {}

#[test]
fn loops_registering_during_signal_stop_are_never_missed() {
    let _watchdog = Watchdog::new(
        "loops_registering_during_signal_stop_are_never_missed",
        Duration::from_secs(300),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut stopped_loops = 0;
    for round in 0..30 {
        let coordinator = coordinator();
        let report = runtime.block_on(coordinator.scope(async {
            let spawner = tokio::spawn(Coordinator::current().scope(async {
                for _ in 0..200 {
                    drop(idle_loop());
                    tokio::task::yield_now().await;
                }
            }));
            tokio::task::yield_now().await;
            let report = lifecycle_runtime::shutdown().await;
            spawner.await.unwrap();
            report
        }));
        assert!(report.is_clean(), "round {round}:\n{report}");
        assert!(
            report.elapsed() < Duration::from_secs(1),
            "round {round}:\n{report}"
        );
        stopped_loops += report.entry("idle-loop").map_or(0, |entry| entry.count());
    }
    assert!(
        stopped_loops > 0,
        "no loop was registered when shutdown came: the race was not exercised"
    );
}

// ----- a tracked task awaiting the report is not waited for ------------------------------------

#[tokio::test(start_paused = true)]
async fn a_tracked_task_awaiting_the_report_does_not_hold_shutdown_up() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        // An admin endpoint that shuts the service down and returns the report, say.
        let asker = lifecycle_runtime::spawn("admin-request", async {
            lifecycle_runtime::shutdown().await
        });
        let report = asker.await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert!(
            report.elapsed() < Duration::from_millis(100),
            "shutdown waited for the task that waits for it:\n{report}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_tracked_task_that_starts_awaiting_the_report_during_step_3_releases_it() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _service = lifecycle_runtime::spawn("service", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
            // Winds down for a while, then waits for the end like everyone else.
            tokio::time::sleep(Duration::from_millis(300)).await;
            lifecycle_runtime::Coordinator::current().report().await
        });
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        // Released the moment it starts waiting, 300ms in (paused clock).
        assert_eq!(
            report.elapsed(),
            Duration::from_millis(300),
            "shutdown waited for a task that waits for it:\n{report}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_report_wait_given_up_inside_the_task_makes_it_waited_for_again() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _impatient = lifecycle_runtime::spawn("impatient", async {
            let coordinator = lifecycle_runtime::Coordinator::current();
            tokio::select! {
                _ = coordinator.report() => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            // No longer waiting for the report, and ignoring shutdown.
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let report = lifecycle_runtime::shutdown().await;
        let entry = report.entry("impatient").expect("the task is named");
        assert_eq!(entry.outcome(), &Outcome::Aborted, "{report}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_report_wait_dropped_by_another_task_makes_its_task_waited_for_again() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let (hand_over, handed) = tokio::sync::oneshot::channel();
        let _keeps_running = lifecycle_runtime::spawn("keeps-running", async move {
            // Registered from its first wait on.
            tokio::task::yield_now().await;
            let coordinator = lifecycle_runtime::Coordinator::current();
            let mut wait = Box::pin(async move { coordinator.report().await });
            // Polled once here (the task counts as awaiting the report), then handed over.
            std::future::poll_fn(|cx| {
                let _ = wait.as_mut().poll(cx);
                std::task::Poll::Ready(())
            })
            .await;
            let _ = hand_over.send(wait);
            // This task goes on running and ignores shutdown: it must be waited for, then
            // aborted and named, not set aside as if it still awaited the report.
            std::future::pending::<()>().await;
        });
        let _drops_the_wait = lifecycle_runtime::spawn("drops-the-wait", async move {
            drop(handed.await);
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let report = lifecycle_runtime::shutdown().await;
        let entry = report
            .entry("keeps-running")
            .unwrap_or_else(|| panic!("the task that ignored shutdown is not named:\n{report}"));
        assert_eq!(entry.outcome(), &Outcome::Aborted, "{report}");
        assert_eq!(
            report.entry("drops-the-wait").map(|entry| entry.outcome()),
            Some(&Outcome::Stopped),
            "{report}"
        );
    })
    .await;
}

// ----- an aborted task's destructor runs while it is still tracked -----------------------------

#[tokio::test(start_paused = true)]
async fn an_aborted_task_whose_destructor_panics_is_reported_panicked() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("rollback failed");
        }
    }
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _stubborn = lifecycle_runtime::spawn("stubborn", async {
            let _rollback = PanicsOnDrop;
            std::future::pending::<()>().await;
        });
        settle().await;
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        let entry = report.entry("stubborn").expect("named");
        assert_eq!(entry.outcome(), &Outcome::Panicked, "{report}");
        assert!(
            entry
                .detail()
                .is_some_and(|detail| detail.contains("rollback failed")),
            "{report}"
        );
    })
    .await;
}

// ----- work started while resources close is stopped and closed too, never dropped silently ----

struct SpawnsOnClose;

impl Close for SpawnsOnClose {
    async fn close(&self) -> Result<(), CloseError> {
        lifecycle_runtime::spawn("deaf-cleanup", std::future::pending::<()>());
        lifecycle_runtime::spawn("cleanup", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        lifecycle_runtime::spawn("finishes-during-close", async {});
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_started_while_resources_close_are_stopped_and_reported() {
    let coordinator = common::coordinator_with_budget(Duration::from_secs(30));
    within(&coordinator, LIMIT, async {
        let _resource = lifecycle_runtime::manage(SpawnsOnClose);
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        // Heard the signal at once (it fired long before it started).
        assert_eq!(
            common::entry(&report, "cleanup").outcome(),
            &Outcome::Stopped,
            "{report}"
        );
        // Ignored it: cut off at its own stop timeout (2 s from when it started), not left running.
        let deaf = common::entry(&report, "deaf-cleanup");
        assert_eq!(deaf.outcome(), &Outcome::Aborted, "{report}");
        let took = started.elapsed();
        lifecycle_tests::record_fault_time(took);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2_200),
            "{took:?}: {report}"
        );
        assert!(!report.is_clean());
    })
    .await;
}

/// A close that opens another resource (a spill file to flush into, say).
struct ManagesOnClose {
    log: Log,
}

impl Close for ManagesOnClose {
    async fn close(&self) -> Result<(), CloseError> {
        common::push(&self.log, "close first");
        let _spill = lifecycle_runtime::manage(Logged {
            name: "spill",
            log: self.log.clone(),
            takes: Duration::from_millis(5),
        });
        Ok(())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        "first".into()
    }
}

#[tokio::test(start_paused = true)]
async fn a_resource_managed_while_resources_close_is_closed_and_reported() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _first = lifecycle_runtime::manage(ManagesOnClose { log: log.clone() });
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(
            common::lines(&log),
            ["close first", "close spill begins", "close spill ends"]
        );
        assert_eq!(common::entry(&report, "spill").outcome(), &Outcome::Closed);
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

/// Every close manages one more: the chain never ends by itself.
struct EndlessChain {
    depth: u32,
}

impl Close for EndlessChain {
    async fn close(&self) -> Result<(), CloseError> {
        lifecycle_runtime::manage(EndlessChain {
            depth: self.depth + 1,
        });
        Ok(())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        format!("link-{}", self.depth).into()
    }
}

#[tokio::test(start_paused = true)]
async fn an_endless_chain_of_late_resources_is_cut_and_reported() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _chain = lifecycle_runtime::manage(EndlessChain { depth: 0 });
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        // The first close, then three late rounds, each closing the link the round before made.
        for depth in 0..4 {
            assert_eq!(
                common::entry(&report, &format!("link-{depth}")).outcome(),
                &Outcome::Closed,
                "{report}"
            );
        }
        let cut = common::entry(&report, "link-4");
        assert_eq!(cut.outcome(), &Outcome::Skipped, "{report}");
        assert!(
            cut.detail()
                .is_some_and(|detail| detail.contains("not closed")),
            "{report}"
        );
        assert!(report.entry("link-5").is_none(), "{report}");
    })
    .await;
}

// ----- a second early close waits for the first ------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_close_while_another_is_under_way_waits_for_it() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let db = lifecycle_runtime::manage(Logged {
            name: "db",
            log: log.clone(),
            takes: Duration::from_millis(500),
        });
        let first = {
            let db = db.clone();
            tokio::spawn(async move { db.close().await })
        };
        settle().await;
        db.close().await.unwrap();
        assert_eq!(
            common::lines(&log),
            ["close db begins", "close db ends"],
            "the second close returned before the first finished, or closed it again"
        );
        first.await.unwrap().unwrap();
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.entry("db").is_none(), "closed early: {report}");
    })
    .await;
}

// ----- an early close that fails says how, and shutdown does not close it again ---------------

#[tokio::test(start_paused = true)]
async fn an_early_close_that_fails_names_the_resource_and_the_cause() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let refuses = lifecycle_runtime::manage(Part::new("refuses", &log, Behaviour::Fail));
        let blows_up = lifecycle_runtime::manage(Part::new("blows-up", &log, Behaviour::Panic));
        let hangs = lifecycle_runtime::manage(Part::new("hangs", &log, Behaviour::Hang));
        assert_eq!(
            refuses.close().await.unwrap_err().to_string(),
            "refuses refused"
        );
        assert_eq!(
            blows_up.close().await.unwrap_err().to_string(),
            "close of `blows-up` panicked: blows-up blew up"
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            hangs.close().await.unwrap_err().to_string(),
            "close of `hangs` timed out: did not close within 3s"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.entries().is_empty(), "closed early, once: {report}");
        assert_eq!(
            common::lines(&log),
            ["close refuses", "close blows-up", "close hangs"]
        );
    })
    .await;
}

// ----- in `abort` mode, a tick that ends as shutdown fires keeps its result ---------------------

#[background(interval = "1h", shutdown = "abort", name = "fails-as-shutdown-comes")]
async fn fails_as_shutdown_comes(go: Arc<tokio::sync::Notify>) -> Result<(), String> {
    go.notified().await;
    Err("disk full".to_owned())
}

#[tokio::test(start_paused = true)]
async fn an_abort_mode_tick_that_fails_as_shutdown_fires_is_still_counted() {
    let _watchdog = Watchdog::new(
        "an_abort_mode_tick_that_fails_as_shutdown_fires_is_still_counted",
        Duration::from_secs(60),
    );
    // An unbiased choice between the two would lose the error about half the time.
    for round in 0..20 {
        let coordinator = coordinator();
        coordinator
            .scope(async {
                let go = Arc::new(tokio::sync::Notify::new());
                let _task = fails_as_shutdown_comes(go.clone());
                settle().await;
                // The tick becomes ready and shutdown fires before the loop is polled again.
                go.notify_one();
                let report = lifecycle_runtime::shutdown().await;
                assert_eq!(
                    lifecycle_runtime::snapshot().counters.failed,
                    1,
                    "round {round}: the failed tick was recorded as cancelled:\n{report}"
                );
            })
            .await;
    }
}
