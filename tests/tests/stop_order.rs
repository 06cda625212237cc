//! Ordered stop: workers declared to stop after others are told to stop only once every worker
//! of an earlier stage ended (or was cut off), their stop timeouts run from their stage's start,
//! the budget still bounds everything, cycles are refused naming the cycle, and the report shows
//! each stage.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Watchdog, coordinator, coordinator_with_budget, entry, settle, within};
use lifecycle_runtime::db::{BatchWriter, Database, DatabaseOptions, PushError};
use lifecycle_runtime::{EntryKind, Outcome, ShutdownReport, background};
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(3600);

/// The report's stage lines, as (number, detail).
fn stages(report: &ShutdownReport) -> Vec<(String, String)> {
    report
        .entries()
        .iter()
        .filter(|entry| entry.kind() == EntryKind::Stage)
        .map(|entry| {
            (
                entry.name().to_owned(),
                entry.detail().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_consumer_is_told_to_stop_only_after_its_producers_ended() {
    let coordinator = coordinator();
    let log = Arc::new(Mutex::new(Vec::<(&str, Duration)>::new()));
    let report = within(&coordinator, LIMIT, async {
        lifecycle_runtime::stop_after("consumer", ["producer"]).unwrap();
        let started = Instant::now();
        for producer in 0..3u64 {
            let log = log.clone();
            lifecycle_runtime::spawn("producer", async move {
                lifecycle_runtime::shutdown_signal().triggered().await;
                // Finishing in-flight work takes a while, more for some than for others.
                tokio::time::sleep(Duration::from_millis(100 * (producer + 1))).await;
                log.lock()
                    .unwrap()
                    .push(("producer done", started.elapsed()));
            });
        }
        let consumer_log = log.clone();
        lifecycle_runtime::spawn("consumer", async move {
            lifecycle_runtime::shutdown_signal().triggered().await;
            consumer_log
                .lock()
                .unwrap()
                .push(("consumer told", started.elapsed()));
        });
        settle().await;
        lifecycle_runtime::shutdown().await
    })
    .await;
    assert!(report.is_clean(), "{report}");
    let log = log.lock().unwrap();
    let told = log.iter().position(|(what, _)| *what == "consumer told");
    assert_eq!(told, Some(3), "the consumer heard last: {log:?}");
    assert!(log[3].1 >= Duration::from_millis(300), "{log:?}");
    // Step 3 looks every few milliseconds: the consumer is told soon after the last producer.
    assert!(log[3].1 < Duration::from_millis(350), "{log:?}");
    let stage_lines = stages(&report);
    assert_eq!(stage_lines.len(), 1, "{report}");
    assert_eq!(stage_lines[0].0, "1");
    assert!(
        stage_lines[0].1.contains("consumer")
            && stage_lines[0].1.contains("after producer")
            && stage_lines[0]
                .1
                .contains("once every worker of an earlier stage had ended"),
        "{report}"
    );
    // The stage line sits between the producers and the consumer, and the consumer's time
    // counts from its stage.
    let names: Vec<(EntryKind, &str)> = report
        .entries()
        .iter()
        .map(|entry| (entry.kind(), entry.name()))
        .collect();
    assert_eq!(
        names,
        [
            (EntryKind::Task, "producer"),
            (EntryKind::Stage, "1"),
            (EntryKind::Task, "consumer")
        ],
        "{report}"
    );
    let consumer = entry(&report, "consumer");
    assert!(consumer.start() >= Duration::from_millis(300), "{report}");
    assert!(consumer.elapsed() < Duration::from_millis(50), "{report}");
    assert!(report.to_string().contains("stage 1"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn without_an_order_everyone_is_told_at_once() {
    let coordinator = coordinator();
    let consumer_told = Arc::new(Mutex::new(None));
    let report = within(&coordinator, LIMIT, async {
        let started = Instant::now();
        lifecycle_runtime::spawn("producer", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        let told = consumer_told.clone();
        lifecycle_runtime::spawn("consumer", async move {
            lifecycle_runtime::shutdown_signal().triggered().await;
            *told.lock().unwrap() = Some(started.elapsed());
        });
        settle().await;
        lifecycle_runtime::shutdown().await
    })
    .await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(*consumer_told.lock().unwrap(), Some(Duration::ZERO));
    assert!(stages(&report).is_empty(), "{report}");
}

#[tokio::test(start_paused = true)]
async fn chains_make_stages_and_a_later_stage_outlasts_every_earlier_worker() {
    let coordinator = coordinator();
    let order = Arc::new(Mutex::new(Vec::new()));
    let report = within(&coordinator, LIMIT, async {
        lifecycle_runtime::stop_after("writer", ["http"]).unwrap();
        lifecycle_runtime::stop_after("archiver", ["writer"]).unwrap();
        for (name, finishing) in [
            ("archiver", 0),
            ("writer", 50),
            ("http", 100),
            ("request", 200),
        ] {
            let order = order.clone();
            lifecycle_runtime::spawn(name, async move {
                lifecycle_runtime::shutdown_signal().triggered().await;
                order.lock().unwrap().push(format!("{name} told"));
                tokio::time::sleep(Duration::from_millis(finishing)).await;
                order.lock().unwrap().push(format!("{name} done"));
            });
        }
        settle().await;
        lifecycle_runtime::shutdown().await
    })
    .await;
    assert!(report.is_clean(), "{report}");
    // "request" is in no order (stage 0), and the writer (stage 1) still waits for it.
    assert_eq!(
        *order.lock().unwrap(),
        [
            "http told",
            "request told",
            "http done",
            "request done",
            "writer told",
            "writer done",
            "archiver told",
            "archiver done"
        ]
    );
    let stage_lines = stages(&report);
    assert_eq!(
        stage_lines
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert!(stage_lines[1].1.contains("archiver"), "{report}");
    assert!(stage_lines[1].1.contains("after writer"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_staged_stop_timeout_runs_from_its_stage_and_an_earlier_stuck_worker_is_cut_off_first() {
    let coordinator = coordinator();
    let report = within(&coordinator, LIMIT, async {
        lifecycle_runtime::stop_after("late", ["stuck"]).unwrap();
        // Ignores shutdown: aborted at its stop timeout (the default, 2 s).
        lifecycle_runtime::spawn("stuck", std::future::pending::<()>());
        lifecycle_runtime::spawn("late", std::future::pending::<()>());
        settle().await;
        let called = Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(called.elapsed());
        report
    })
    .await;
    assert!(!report.is_clean());
    let stuck = entry(&report, "stuck");
    assert_eq!(stuck.outcome(), &Outcome::Aborted, "{report}");
    let late = entry(&report, "late");
    assert_eq!(late.outcome(), &Outcome::Aborted, "{report}");
    // Told to stop once "stuck" was cut off (at its default stop timeout, 2 s, and the next
    // look a few milliseconds later), aborted its own 2 s after that.
    assert!(
        late.start() >= Duration::from_secs(2) && late.start() < Duration::from_millis(2100),
        "{report}"
    );
    assert_eq!(late.elapsed(), Duration::from_secs(2), "{report}");
    assert!(
        late.detail()
            .unwrap()
            .contains("ignored shutdown for its whole stop timeout"),
        "{report}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_still_bounds_the_stop_when_an_earlier_worker_never_ends() {
    let coordinator = coordinator_with_budget(Duration::from_secs(1));
    let report = within(&coordinator, LIMIT, async {
        lifecycle_runtime::stop_after("flusher", ["stuck"]).unwrap();
        lifecycle_runtime::spawn("stuck", std::future::pending::<()>());
        lifecycle_runtime::spawn("flusher", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        settle().await;
        let called = Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(called.elapsed());
        report
    })
    .await;
    // "stuck" (due at 2 s) holds the flusher's stage until the 1 s budget runs out; then both
    // are cut, and the report says the budget did it.
    assert_eq!(report.elapsed(), Duration::from_secs(1), "{report}");
    for name in ["stuck", "flusher"] {
        let entry = entry(&report, name);
        assert_eq!(entry.outcome(), &Outcome::Aborted, "{report}");
        assert!(
            entry
                .detail()
                .unwrap()
                .starts_with("still running when the shutdown budget ran out"),
            "{report}"
        );
    }
    let stage_lines = stages(&report);
    assert_eq!(stage_lines.len(), 1, "{report}");
    assert!(
        stage_lines[0]
            .1
            .contains("when the shutdown budget ran out"),
        "{report}"
    );
}

#[tokio::test]
async fn cycles_are_refused_naming_the_cycle_and_nothing_is_spawned() {
    let coordinator = coordinator();
    within(&coordinator, Duration::from_secs(60), async {
        lifecycle_runtime::stop_after("writer", ["http"]).unwrap();
        lifecycle_runtime::stop_after("archiver", ["writer"]).unwrap();
        let error = lifecycle_runtime::spawn_after("http", ["archiver"], async {}).unwrap_err();
        assert_eq!(error.cycle(), ["http", "archiver", "writer", "http"]);
        assert_eq!(
            error.to_string(),
            "stop order cycle: `http` → `archiver` → `writer` → `http` (each stops after the \
             next); remove one of these `stop_after` declarations"
        );
        let error = lifecycle_runtime::stop_after("self", ["self"]).unwrap_err();
        assert_eq!(error.cycle(), ["self", "self"]);
        assert_eq!(lifecycle_runtime::snapshot().tasks.len(), 0);
        // The refused declaration changed nothing: "http" is still in stage 0.
        let handle = lifecycle_runtime::spawn_after("http", ["nothing"], async {}).unwrap();
        handle.await.unwrap();
    })
    .await;
    assert!(coordinator.shutdown().await.is_clean());
}

// ----- #[background(stop_after)] ------------------------------------------------------------------

static PRODUCER_DONE: AtomicBool = AtomicBool::new(false);
static FINAL_TICK_SAW_PRODUCER_DONE: AtomicUsize = AtomicUsize::new(0);

#[background(interval = "1h", shutdown = "final_tick", stop_after = "slow-producer")]
async fn flush_after_producer(shutdown: lifecycle_runtime::Shutdown) {
    if shutdown.is_triggered() && PRODUCER_DONE.load(Ordering::SeqCst) {
        FINAL_TICK_SAW_PRODUCER_DONE.fetch_add(1, Ordering::SeqCst);
    }
}

#[background(shutdown, name = "slow-producer")]
async fn slow_producer(shutdown: lifecycle_runtime::Shutdown) {
    shutdown.triggered().await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    PRODUCER_DONE.store(true, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn a_background_loop_with_stop_after_runs_its_final_tick_after_the_producer_ended() {
    let coordinator = coordinator();
    let report = within(&coordinator, LIMIT, async {
        let _flusher = flush_after_producer();
        let _producer = slow_producer();
        settle().await;
        lifecycle_runtime::shutdown().await
    })
    .await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(FINAL_TICK_SAW_PRODUCER_DONE.load(Ordering::SeqCst), 1);
    let flusher = entry(&report, "flush_after_producer");
    assert!(flusher.start() >= Duration::from_millis(250), "{report}");
}

// ----- BatchWriter::stop_after ------------------------------------------------------------------

/// A writer (flush timeout `flush`) fed by 4 "http" tasks that push `late` and more after the
/// stop signal; with `order`, the writer stops after them.
async fn writer_after_http(
    order: bool,
    late: Duration,
    flush: Duration,
) -> (ShutdownReport, Vec<Result<(), String>>, i64) {
    let path = std::env::temp_dir().join(format!(
        "lifecycle-stop-order-{order}-{}-{}.sqlite",
        late.as_millis(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let coordinator = common::coordinator_with_budget(Duration::from_secs(10));
    let results = Arc::new(Mutex::new(Vec::new()));
    let report = within(&coordinator, Duration::from_secs(60), async {
        let db = Database::connect(DatabaseOptions::sqlite(&path, "stop-order"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE items (id INTEGER)")
            .execute(db.pool())
            .await
            .unwrap();
        let builder =
            BatchWriter::builder("items", &db, |db: Database, ids: Arc<[i64]>| async move {
                for id in ids.iter() {
                    sqlx::query("INSERT INTO items (id) VALUES ($1)")
                        .bind(*id)
                        .execute(db.pool())
                        .await?;
                }
                Ok::<(), sqlx::Error>(())
            })
            .interval(Duration::from_secs(3600))
            .flush_timeout(flush);
        let writer = match order {
            true => builder.stop_after(["http"]).spawn(),
            false => builder.spawn(),
        };
        // Requests still in flight when tasks are told to stop push once they finish.
        for id in 0..4i64 {
            let writer = writer.clone();
            let results = results.clone();
            lifecycle_runtime::spawn("http", async move {
                lifecycle_runtime::shutdown_signal().triggered().await;
                tokio::time::sleep(late + Duration::from_millis(20 * id as u64)).await;
                let pushed = writer.push_wait(id).await.map_err(|error| match error {
                    PushError::Closed { .. } => "closed".to_owned(),
                    other => other.to_string(),
                });
                results.lock().unwrap().push(pushed);
            });
        }
        settle().await;
        lifecycle_runtime::shutdown().await
    })
    .await;
    let check = Database::connect(DatabaseOptions::sqlite(&path, "stop-order-check"))
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(check.pool())
        .await
        .unwrap();
    let results = results.lock().unwrap().clone();
    (report, results, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_after_the_server_writes_what_requests_push_after_the_stop_signal() {
    let _watchdog = Watchdog::new("writer after http", Duration::from_secs(120));
    let (report, results, rows) =
        writer_after_http(true, Duration::from_millis(50), Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(results, vec![Ok(()); 4], "{report}");
    assert_eq!(rows, 4, "{report}");
    assert!(
        stages(&report)
            .iter()
            .any(|(_, detail)| detail.contains("batch-writer items")),
        "{report}"
    );
    // The control: stopped together, the writer refuses what the requests push late.
    let (report, results, rows) =
        writer_after_http(false, Duration::from_millis(50), Duration::from_secs(5)).await;
    assert_eq!(results, vec![Err("closed".to_owned()); 4], "{report}");
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_after_the_server_has_its_whole_flush_time_after_a_long_first_stage() {
    let _watchdog = Watchdog::new("long first stage", Duration::from_secs(120));
    // The requests go on for 1.2 s after the stop signal, more than the writer's 300 ms flush
    // time: that time runs from the writer's stage, not from the stop signal.
    let (report, results, rows) = writer_after_http(
        true,
        Duration::from_millis(1200),
        Duration::from_millis(300),
    )
    .await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(results, vec![Ok(()); 4], "{report}");
    assert_eq!(rows, 4, "{report}");
    let writer = report
        .entries()
        .iter()
        .find(|entry| entry.kind() == EntryKind::Task && entry.name() == "batch-writer items")
        .unwrap_or_else(|| panic!("no writer task:\n{report}"));
    assert!(writer.start() >= Duration::from_millis(1200), "{report}");
}

#[tokio::test]
#[should_panic(expected = "cannot start batch writer `loop`: stop order cycle")]
async fn a_writer_whose_order_is_a_cycle_panics_at_spawn_naming_it() {
    let coordinator = coordinator();
    let path = std::env::temp_dir().join(format!(
        "lifecycle-stop-order-cycle-{}.sqlite",
        std::process::id()
    ));
    coordinator
        .scope(async {
            let db = Database::connect(DatabaseOptions::sqlite(&path, "cycle"))
                .await
                .unwrap();
            lifecycle_runtime::stop_after("http", ["batch-writer loop"]).unwrap();
            let _writer = BatchWriter::builder("loop", &db, |_db: Database, _: Arc<[i64]>| async {
                Ok::<(), sqlx::Error>(())
            })
            .stop_after(["http"])
            .spawn();
        })
        .await;
}

// ----- a supervised service in a later stage --------------------------------------------------

static CONSUMER_RUNS: AtomicUsize = AtomicUsize::new(0);
static FEEDER_DONE: AtomicBool = AtomicBool::new(false);
static CONSUMER_TOLD_AFTER_FEEDER: AtomicBool = AtomicBool::new(false);

#[background(shutdown, name = "feeder")]
async fn feeder(shutdown: lifecycle_runtime::Shutdown) {
    shutdown.triggered().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    FEEDER_DONE.store(true, Ordering::SeqCst);
}

/// Fails once while the feeder still runs (shutdown has started, its own stage has not), which
/// must not end it: it is restarted, and stops when its stage is told.
#[background(shutdown, restart = "on_failure", stop_after = "feeder")]
async fn supervised_consumer(shutdown: lifecycle_runtime::Shutdown) -> Result<(), String> {
    if CONSUMER_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        while !lifecycle_runtime::Coordinator::current().is_shutting_down() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        return Err("lost its upstream".to_owned());
    }
    shutdown.triggered().await;
    CONSUMER_TOLD_AFTER_FEEDER.store(FEEDER_DONE.load(Ordering::SeqCst), Ordering::SeqCst);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_supervised_service_in_a_later_stage_is_restarted_until_its_own_stage_is_told() {
    let coordinator = coordinator();
    let report = within(&coordinator, LIMIT, async {
        let _consumer = supervised_consumer();
        let _feeder = feeder();
        settle().await;
        lifecycle_runtime::shutdown().await
    })
    .await;
    assert_eq!(CONSUMER_RUNS.load(Ordering::SeqCst), 2, "{report}");
    assert!(
        CONSUMER_TOLD_AFTER_FEEDER.load(Ordering::SeqCst),
        "{report}"
    );
}

/// Tasks keep being spawned late in a staged stop (requests to a server of the last stage),
/// each in its first poll for a moment only. However long after the stop signal they come, none
/// is taken for a task blocked in its first poll: that takes one in it for the default stop
/// timeout.
#[test]
fn tasks_spawned_late_in_a_staged_stop_are_not_taken_for_blocked_ones() {
    let _watchdog = Watchdog::new("late_first_polls", Duration::from_secs(30));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let coordinator = coordinator();
    let report = runtime.block_on(coordinator.scope(async {
        lifecycle_runtime::stop_after("b", ["a"]).unwrap();
        lifecycle_runtime::stop_after("c", ["b"]).unwrap();
        // Stages 0 and 1 take 1.2 s each: "c" is told 2.4 s after the stop signal, past the
        // default stop timeout (2 s).
        for name in ["a", "b"] {
            lifecycle_runtime::spawn(name, async {
                lifecycle_runtime::shutdown_signal().triggered().await;
                tokio::time::sleep(Duration::from_millis(1200)).await;
            });
        }
        lifecycle_runtime::spawn("c", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
            for _ in 0..20 {
                // A first poll that takes 30 ms (blocking, as a slow handler's first step may),
                // then a wait: it registers, and step 3 looks again.
                lifecycle_runtime::spawn("c request", async {
                    std::thread::sleep(Duration::from_millis(30));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        settle().await;
        let called = Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(called.elapsed());
        report
    }));
    assert!(report.is_clean(), "{report}");
    let told = entry(&report, "c").start();
    assert!(told >= Duration::from_millis(2400), "{report}");
    assert_eq!(
        entry(&report, "c request").count(),
        20,
        "every request ran and ended: {report}"
    );
}

/// A task blocked in its first poll is still given up on (and the report says so) while quick
/// tasks keep being spawned and polled around it: their first polls ending never hide it.
#[test]
fn a_task_blocked_in_its_first_poll_is_given_up_on_while_quick_ones_keep_coming() {
    let _watchdog = Watchdog::new("blocked_first_poll_in_traffic", Duration::from_secs(30));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let coordinator = coordinator_with_budget(Duration::from_secs(10));
    let stop_stream = Arc::new(AtomicBool::new(false));
    let report = runtime.block_on(coordinator.scope(async {
        // Quick tasks, every 50 ms, from a thread of their own, all through the stop.
        let stream = std::thread::spawn({
            let handle = tokio::runtime::Handle::current();
            let coordinator = lifecycle_runtime::Coordinator::current();
            let stop = stop_stream.clone();
            move || {
                let _runtime = handle.enter();
                while !stop.load(Ordering::SeqCst) {
                    drop(coordinator.spawn("quick", async {}));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        // Blocks one of the two runtime threads in its first poll for 4 s.
        drop(lifecycle_runtime::spawn("stuck", async {
            std::thread::sleep(Duration::from_secs(4));
        }));
        let called = Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        let took = called.elapsed();
        lifecycle_tests::record_fault_time(took);
        stop_stream.store(true, Ordering::SeqCst);
        stream.join().unwrap();
        (report, took)
    }));
    let (report, took) = report;
    let text = report.to_string();
    assert!(
        text.contains("never returned from their first poll"),
        "{text}"
    );
    // Given up on about the default stop timeout (2 s) after it was seen, not when it ended
    // by itself (4 s).
    assert!(took < Duration::from_millis(3500), "took {took:?}:\n{text}");
}
