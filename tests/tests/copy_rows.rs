//! `copy_rows`: rows written with PostgreSQL's `COPY ... FROM STDIN` come back exactly as sent
//! (texts with the characters the text format escapes, NULL next to empty strings and `\N`
//! texts, timestamps to the microsecond, floats' special values, bytes, unicode), a large batch
//! goes in whole, a bad batch leaves nothing and the connection usable, and `copy_rows` works as
//! a `BatchWriter`'s write function. Against a throwaway cluster (`PgCluster`).

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Watchdog;
use lifecycle_runtime::db::{
    BatchWriter, CopyError, Database, DatabaseOptions, WriteError, copy_rows,
};
use lifecycle_tests::pg::PgCluster;
use sqlx::Postgres;
use sqlx::postgres::PgPool;
use sqlx::{Connection, Row};

const HANG: Duration = Duration::from_secs(300);

type Full = (
    i64,
    String,
    SystemTime,
    Option<String>,
    bool,
    f64,
    i32,
    Vec<u8>,
);

/// Microseconds after the epoch, cut toward the past as PostgreSQL stores them.
fn micros(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_micros() as i64,
        Err(before) => {
            let before = before.duration();
            -(before.as_micros() as i64) - i64::from(before.subsec_nanos() % 1_000 != 0)
        }
    }
}

fn texts() -> Vec<String> {
    [
        "plain",
        "tab\there",
        "new\nline",
        "carriage\rreturn",
        "back\\slash",
        "end\\",
        "\\N",
        "\\.",
        "\\t is not a tab",
        "",
        " ",
        "unicode é ß 日本語 🎉",
        "mixed \\t\t\\n\n\\r\r\\\\",
        "\u{1}\u{8}\u{b}\u{c}\u{7f} controls",
        "quote ' \" and ; DROP TABLE t",
    ]
    .iter()
    .map(|text| (*text).to_owned())
    .chain([format!("long {}", "xy\t\\".repeat(5_000))])
    .collect()
}

fn full_rows() -> Vec<Full> {
    let now = SystemTime::now();
    let times = [
        UNIX_EPOCH,
        now,
        UNIX_EPOCH - Duration::from_nanos(1_500),
        UNIX_EPOCH - Duration::from_secs(62_135_596_800 + 86_400), // 0000-12-31: 1 BC
        UNIX_EPOCH + Duration::from_secs(7_258_118_400),           // 2200-01-01
        UNIX_EPOCH + Duration::new(951_827_696, 789_012_345),      // 2000-02-29, cut to µs
    ];
    let floats = [0.1, -0.0, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    texts()
        .into_iter()
        .enumerate()
        .map(|(at, body)| {
            let note = match at % 3 {
                0 => None,
                1 => Some(String::new()),
                _ => Some(body.clone()),
            };
            let bytes = body
                .as_bytes()
                .iter()
                .rev()
                .copied()
                .chain([0, 0xff])
                .collect();
            (
                at as i64,
                body,
                times[at % times.len()],
                note,
                at % 2 == 0,
                floats[at % floats.len()],
                -(at as i32) * 1_000_003,
                bytes,
            )
        })
        .collect()
}

async fn pool(cluster: &PgCluster) -> PgPool {
    PgPool::connect(&cluster.url()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_comes_back_as_it_was_sent() {
    let _watchdog = Watchdog::new("copy_types", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    cluster.psql(
        "CREATE TABLE t (id int8, body text, at timestamptz, note text, flag bool, \
         ratio float8, small int4, data bytea); GRANT ALL ON t TO app",
    );
    let pg = pool(&cluster).await;
    let rows = full_rows();
    let mut conn = pg.acquire().await.unwrap();
    let columns = ["id", "body", "at", "note", "flag", "ratio", "small", "data"];
    let stored = copy_rows(&mut conn, "t", &columns, &rows).await.unwrap();
    assert_eq!(stored, rows.len() as u64);
    let back = sqlx::query(
        "SELECT id, body, (extract(epoch FROM at) * 1000000)::int8, note, flag, ratio, small, \
         data, note IS NULL FROM t ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(back.len(), rows.len());
    for (row, sent) in back.iter().zip(&rows) {
        let id: i64 = row.get(0);
        assert_eq!(id, sent.0);
        assert_eq!(row.get::<String, _>(1), sent.1, "row {id}");
        assert_eq!(row.get::<i64, _>(2), micros(sent.2), "row {id}");
        assert_eq!(row.get::<Option<String>, _>(3), sent.3, "row {id}");
        assert_eq!(
            row.get::<bool, _>(8),
            sent.3.is_none(),
            "row {id}: NULL only for None"
        );
        assert_eq!(row.get::<bool, _>(4), sent.4, "row {id}");
        let ratio: f64 = row.get(5);
        assert!(
            ratio.to_bits() == sent.5.to_bits() || (ratio.is_nan() && sent.5.is_nan()),
            "row {id}: {ratio} for {}",
            sent.5
        );
        assert_eq!(row.get::<i32, _>(6), sent.6, "row {id}");
        assert_eq!(row.get::<Vec<u8>, _>(7), sent.7, "row {id}");
    }
    // The timestamps' text, read by the server in UTC.
    let shown =
        cluster.psql("SET timezone = 'UTC'; SELECT at FROM t WHERE id IN (0, 3, 5) ORDER BY id");
    assert_eq!(
        shown,
        "1970-01-01 00:00:00+00\n0001-12-31 00:00:00+00 BC\n2000-02-29 12:34:56.789012+00"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_goes_in_whole_and_a_bad_one_leaves_nothing() {
    const ROWS: i64 = 200_000;
    let _watchdog = Watchdog::new("copy_large", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    cluster.psql(
        "CREATE TABLE events (id int8, body text, at timestamptz); GRANT ALL ON events TO app",
    );
    let pg = pool(&cluster).await;
    let start = SystemTime::now();
    let rows: Vec<(i64, String, SystemTime)> = (0..ROWS)
        .map(|id| {
            let at = start + Duration::from_micros(id as u64);
            (id, format!("event {id}: something\thappened\nthere"), at)
        })
        .collect();
    let mut conn = pg.acquire().await.unwrap();
    let columns = ["id", "body", "at"];
    assert_eq!(
        copy_rows(&mut conn, "events", &columns, &rows)
            .await
            .unwrap(),
        ROWS as u64
    );
    let summary = cluster.psql(
        "SELECT count(*), sum(id), count(DISTINCT at), \
         bool_and(body = 'event ' || id || E': something\\thappened\\nthere') FROM events",
    );
    assert_eq!(
        summary,
        format!("{ROWS}|{}|{ROWS}|t", ROWS * (ROWS - 1) / 2)
    );

    // A row with a field short, past the first chunk sent: the COPY is aborted, nothing of it
    // is stored, and the connection serves the next statement.
    let rows: Vec<Vec<i64>> = (0..50_000)
        .map(|id| if id == 40_000 { vec![id] } else { vec![id, id] })
        .collect();
    let rows: Vec<Row2> = rows.into_iter().map(Row2).collect();
    cluster.psql("CREATE TABLE pairs (a int8, b int8); GRANT ALL ON pairs TO app");
    let error = copy_rows(&mut conn, "pairs", &["a", "b"], &rows)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot COPY into pairs: row 40000 has 1 fields, but 2 columns are named"
    );
    assert_eq!(cluster.psql("SELECT count(*) FROM pairs"), "0");
    conn.ping().await.unwrap();

    // A value the column type refuses: the server's error, and nothing stored.
    let error = copy_rows(&mut conn, "pairs", &["a", "b"], &[(1_i64, "one")])
        .await
        .unwrap_err();
    assert!(matches!(&error, CopyError::Database { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("COPY into pairs failed: ")
            && message.contains("invalid input syntax for type bigint: \"one\""),
        "{message}"
    );
    // A table that does not exist.
    let message = copy_rows(&mut conn, "missing", &["a"], &[(1_i64,)])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("relation \"missing\" does not exist"),
        "{message}"
    );
    assert_eq!(cluster.psql("SELECT count(*) FROM pairs"), "0");
    conn.ping().await.unwrap();
}

/// A row of as many `bigint`s as it holds.
struct Row2(Vec<i64>);

impl lifecycle_runtime::db::CopyRow for Row2 {
    fn encode(&self, row: &mut lifecycle_runtime::db::CopyEncoder<'_>) {
        for value in &self.0 {
            row.field(value);
        }
    }
}

/// `copy_rows` as the write function of a `BatchWriter` on a typed `Database<Postgres>`:
/// concurrent committed writes go in with COPY, and a batch the server refuses fails with its
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_rows_writes_a_batch_writers_batches() {
    let _watchdog = Watchdog::new("copy_writer", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    cluster.psql(
        "CREATE TABLE events (id int8 CHECK (id >= 0), body text, at timestamptz); \
         GRANT ALL ON events TO app",
    );
    let coordinator = common::coordinator();
    coordinator
        .scope(async {
            let db = Database::<Postgres>::connect_typed(DatabaseOptions::new(
                cluster.url(),
                "copy-writer",
            ))
            .await
            .unwrap();
            type Event = (i64, String, SystemTime);
            // On the typed database: its tracked connection is a `PgConnection`.
            let writer = BatchWriter::builder(
                "events",
                &db,
                |db: Database<Postgres>, rows: Arc<[Event]>| async move {
                    let mut conn = db.acquire().await?;
                    copy_rows(&mut conn, "events", &["id", "body", "at"], &rows).await?;
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                },
            )
            .retries(0)
            .spawn();
            let writes: Vec<_> = (0..300)
                .map(|id| {
                    let writer = writer.clone();
                    tokio::spawn(async move {
                        writer
                            .write((id, format!("body\t{id}"), SystemTime::now()))
                            .await
                    })
                })
                .collect();
            for write in writes {
                write.await.unwrap().unwrap();
            }
            assert_eq!(cluster.psql("SELECT count(DISTINCT id) FROM events"), "300");
            let error = writer
                .write((-1, "refused".to_owned(), SystemTime::now()))
                .await
                .unwrap_err();
            assert!(matches!(error, WriteError::Failed { .. }), "{error:?}");
            assert!(error.to_string().contains("events_id_check"), "{error}");
            let report = lifecycle_runtime::shutdown().await;
            let stats = writer.stats();
            assert_eq!((stats.written, stats.failed), (300, 1), "{report}");
        })
        .await;
}
