//! `#[managed_resource]`: fields close in declaration order, each under its own timeout, best
//! effort, after `before_close`; one report entry per field.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Behaviour, Log, Part, coordinator, entry, lines, push, within};
use lifecycle_runtime::{Close, EntryKind, NoCleanup, Outcome, managed_resource};

const LIMIT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
struct Settings {
    #[allow(
        dead_code,
        reason = "a plain value with no cleanup; only its presence matters"
    )]
    retries: u32,
}

impl NoCleanup for Settings {}

/// A writer whose buffer must be flushed before its connection closes.
struct Writer {
    log: Log,
}

async fn flush_writer(writer: &Writer) -> Result<(), std::io::Error> {
    push(&writer.log, "flush writer");
    Ok(())
}

#[managed_resource(close_timeout = "2s", before_close = Store::say_goodbye, name = "store")]
struct Store {
    cache: Part,
    #[close(timeout = "5s")]
    db: Part,
    #[close(with = flush_writer)]
    writer: Writer,
    #[close(skip = "holds only numbers")]
    #[allow(dead_code, reason = "skipped: only its report entry matters")]
    stats: Vec<u64>,
    settings: Settings,
    retries: u32,
    #[close(skip = "the test's own log")]
    log: Log,
}

impl Store {
    async fn say_goodbye(&self) {
        push(&self.log, "goodbye");
    }
}

fn store(log: &Log, cache: Behaviour, db: Behaviour) -> Store {
    Store {
        cache: Part::new("cache", log, cache),
        db: Part::new("db", log, db),
        writer: Writer { log: log.clone() },
        stats: vec![1, 2, 3],
        settings: Settings { retries: 3 },
        retries: 3,
        log: log.clone(),
    }
}

/// A field whose limit is the largest duration there is: "no limit".
#[managed_resource(name = "unbounded")]
struct Unbounded {
    #[close(timeout = "18446744073709551615s")]
    forever: Part,
    quick: Part,
}

#[test]
fn a_field_without_a_limit_gives_its_resource_none_instead_of_overflowing() {
    let log: Log = Arc::default();
    let unbounded = Unbounded {
        forever: Part::new("forever", &log, Behaviour::Ok),
        quick: Part::new("quick", &log, Behaviour::Ok),
    };
    assert_eq!(
        lifecycle_runtime::Close::close_timeout(&unbounded),
        Duration::MAX
    );
}

/// Two limits that each fit, but not their sum.
#[managed_resource(name = "huge")]
struct Huge {
    #[close(timeout = "10000000000000000000s")]
    first: Part,
    #[close(timeout = "10000000000000000000s")]
    second: Part,
}

#[test]
fn field_limits_whose_sum_overflows_saturate_to_no_limit() {
    let log: Log = Arc::default();
    let huge = Huge {
        first: Part::new("first", &log, Behaviour::Ok),
        second: Part::new("second", &log, Behaviour::Ok),
    };
    assert_eq!(
        lifecycle_runtime::Close::close_timeout(&huge),
        Duration::MAX
    );
}

#[test]
fn without_close_timeout_each_field_counts_the_default_limit() {
    let log: Log = Arc::default();
    let outer = Outer {
        inner: Inner {
            part: Part::new("deep", &log, Behaviour::Ok),
        },
        last: Part::new("last", &log, Behaviour::Ok),
    };
    // The default close timeout (3s) per field, and a moment (250ms) for the bookkeeping; a
    // field's own `close_timeout()` (the nested resource's 3.25s) does not count.
    assert_eq!(
        lifecycle_runtime::Close::close_timeout(&outer.inner),
        Duration::from_millis(3_250)
    );
    assert_eq!(
        lifecycle_runtime::Close::close_timeout(&outer),
        Duration::from_millis(6_250)
    );
    // A skipped field counts nothing.
    let pair = Pair(Part::new("first", &log, Behaviour::Ok), "label".into());
    assert_eq!(
        lifecycle_runtime::Close::close_timeout(&pair),
        Duration::from_millis(3_250)
    );
}

#[tokio::test(start_paused = true)]
async fn fields_close_in_declaration_order_after_before_close_one_entry_each() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let managed = lifecycle_runtime::manage(store(&log, Behaviour::Ok, Behaviour::Ok));
        assert_eq!(managed.name(), "store");
        // 2s hook + 2s cache + 5s db + 2s writer + 2s each for the no-op `settings` and
        // `retries`, and a moment of slack; the skipped field takes none.
        assert_eq!(managed.close_timeout(), Duration::from_millis(15_250));
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            lines(&log),
            ["goodbye", "close cache", "close db", "flush writer"]
        );
        assert!(report.is_clean(), "{report}");
        let fields: Vec<(&str, Option<&str>)> = report
            .entries()
            .iter()
            .filter(|e| e.kind() == EntryKind::Field)
            .map(|e| (e.name(), e.parent()))
            .collect();
        assert_eq!(
            fields,
            [
                ("before_close", Some("store")),
                ("cache", Some("store")),
                ("db", Some("store")),
                ("writer", Some("store")),
                ("stats", Some("store")),
                ("settings", Some("store")),
                ("retries", Some("store")),
                ("log", Some("store")),
            ]
        );
        assert_eq!(
            entry(&report, "stats").detail(),
            Some("no cleanup: holds only numbers")
        );
        assert!(
            report.to_string().contains("closed      field cache"),
            "{report}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_field_times_out_alone_and_later_fields_still_close() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _store = lifecycle_runtime::manage(store(&log, Behaviour::Hang, Behaviour::Ok));
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(
            lines(&log),
            ["goodbye", "close cache", "close db", "flush writer"]
        );
        let cache = entry(&report, "cache");
        assert_eq!(cache.outcome(), &Outcome::TimedOut, "{report}");
        assert_eq!(
            cache.elapsed(),
            Duration::from_secs(2),
            "its own (the struct's) timeout"
        );
        assert_eq!(entry(&report, "db").outcome(), &Outcome::Closed);
        let resource = entry(&report, "store");
        assert_eq!(
            resource.outcome(),
            &Outcome::Error("store: field `cache` did not close within 2s".to_owned()),
            "{report}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn failing_and_panicking_fields_are_contained_and_named() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _store = lifecycle_runtime::manage(store(&log, Behaviour::Panic, Behaviour::Fail));
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(
            lines(&log),
            ["goodbye", "close cache", "close db", "flush writer"]
        );
        assert_eq!(entry(&report, "cache").outcome(), &Outcome::Panicked);
        assert_eq!(entry(&report, "cache").detail(), Some("cache blew up"));
        assert_eq!(
            entry(&report, "db").outcome(),
            &Outcome::Error("db refused".to_owned())
        );
        assert_eq!(entry(&report, "writer").outcome(), &Outcome::Closed);
        let Outcome::Error(summary) = entry(&report, "store").outcome() else {
            panic!("{report}")
        };
        assert_eq!(
            summary,
            "store: field `cache` panicked: cache blew up; field `db`: db refused"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_early_close_closes_every_field_once() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let managed = lifecycle_runtime::manage(store(
            &log,
            Behaviour::Slow(Duration::from_millis(10)),
            Behaviour::Ok,
        ));
        managed.close().await.unwrap();
        managed.close().await.unwrap();
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            lines(&log),
            ["goodbye", "close cache", "close db", "flush writer"]
        );
        assert!(report.entries().is_empty(), "{report}");
    })
    .await;
}

/// A resource holding another: its fields are listed under `outer.inner`.
#[managed_resource]
struct Inner {
    part: Part,
}

#[managed_resource(name = "outer")]
struct Outer {
    inner: Inner,
    last: Part,
}

#[tokio::test(start_paused = true)]
async fn nested_resources_list_their_fields_under_the_path() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _outer = lifecycle_runtime::manage(Outer {
            inner: Inner {
                part: Part::new("deep", &log, Behaviour::Ok),
            },
            last: Part::new("last", &log, Behaviour::Ok),
        });
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(lines(&log), ["close deep", "close last"]);
        let part = entry(&report, "part");
        assert_eq!(part.parent(), Some("outer.inner"));
        assert_eq!(entry(&report, "inner").parent(), Some("outer"));
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

/// Tuple structs name their fields by index; generic fields need a `Close` bound.
#[managed_resource(name = "pair")]
struct Pair<T: Close>(T, #[close(skip = "a label")] String);

#[tokio::test(start_paused = true)]
async fn tuple_and_generic_structs_close_too() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let pair = lifecycle_runtime::manage(Pair(
            Part::new("first", &log, Behaviour::Ok),
            "label".into(),
        ));
        assert_eq!(pair.1, "label");
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(lines(&log), ["close first"]);
        assert_eq!(entry(&report, "0").parent(), Some("pair"));
        assert_eq!(entry(&report, "1").detail(), Some("no cleanup: a label"));
    })
    .await;
}

/// A field named with a raw identifier is reported under its plain name.
#[managed_resource(name = "keyworded")]
struct Keyworded {
    r#type: Part,
}

#[tokio::test(start_paused = true)]
async fn raw_identifier_fields_are_reported_without_the_prefix() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log: Log = Arc::default();
        let _keyworded = lifecycle_runtime::manage(Keyworded {
            r#type: Part::new("type", &log, Behaviour::Ok),
        });
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            entry(&report, "type").parent(),
            Some("keyworded"),
            "{report}"
        );
        assert!(report.entry("r#type").is_none());
    })
    .await;
}
