//! Writing rows into PostgreSQL: `copy_rows` (COPY FROM STDIN, text format) against `psql \copy`
//! of the same rows (the physical reference: the server's own loader fed from a file), and the
//! ways before it: `BatchWriter` with a transaction of 500 INSERTs a batch, and one INSERT per
//! row. Rows of 3 columns (bigint, text of 30 to 60 characters, timestamptz) into a regular table
//! the bench creates, truncates before each case and drops at the end.
//!
//! Against a running server (loopback), `test` database:
//!
//! ```sh
//! ROUNDS=3 ROWS=1000000 cargo bench -p lifecycle-runtime --features postgres --bench copy
//! ```
//!
//! `BENCH_DATABASE_URL` overrides `postgres://$USER@127.0.0.1:5432/test`; psql gets the same
//! host, port, user and database.

mod common;

use std::io::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lifecycle_runtime::Coordinator;
use lifecycle_runtime::db::{
    BatchWriter, CopyEncoder, CopyError, Database, DatabaseOptions, copy_rows,
};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool};

use common::print::{Table, announce, count, ratio, target};
use common::rounds::{self, Spread};

type Event = (i64, String, SystemTime);

/// Rows a batch of the COPY writer holds (and rows a `copy_rows` call sends in the direct case).
const COPY_BATCH: usize = 10_000;
/// The BatchWriter's INSERT baseline writes at most this many rows a round (rows/s scale).
const INSERT_BATCH_ROWS: usize = 50_000;
/// The one-INSERT-per-row baseline writes at most this many rows a round.
const INSERT_ROW_ROWS: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    Psql,
    CopyRows,
    CopyWriter,
    InsertWriter,
    InsertPerRow,
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::Psql => "`psql \\copy` from a file (reference)",
            Case::CopyRows => "`copy_rows`, 10,000 rows a call",
            Case::CopyWriter => "`BatchWriter` + `copy_rows`, batches of 10,000",
            Case::InsertWriter => "`BatchWriter`, 500 INSERTs a transaction",
            Case::InsertPerRow => "one INSERT per row, autocommit",
        }
    }

    fn rows(self, all: usize) -> usize {
        match self {
            Case::InsertWriter => all.min(INSERT_BATCH_ROWS),
            Case::InsertPerRow => all.min(INSERT_ROW_ROWS),
            _ => all,
        }
    }
}

struct Bench {
    url: String,
    options: PgConnectOptions,
    table: String,
    rows: Arc<[Event]>,
    file: std::path::PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Bench {
    fn psql(&self, command: &str) {
        let output = Command::new("psql")
            .args(["-h", self.options.get_host(), "-p"])
            .arg(self.options.get_port().to_string())
            .args(["-U", self.options.get_username()])
            .args(["-d", self.options.get_database().unwrap_or("test")])
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql -c {command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Rows per second for `case`, the table emptied first (not timed).
    fn measure(&self, case: Case) -> f64 {
        self.psql(&format!("TRUNCATE {}", self.table));
        let rows = case.rows(self.rows.len());
        let took = match case {
            Case::Psql => {
                let started = Instant::now();
                self.psql(&format!(
                    "\\copy {} (id, body, at) FROM '{}'",
                    self.table,
                    self.file.display()
                ));
                started.elapsed()
            }
            _ => self.runtime.block_on(self.write(case, rows)),
        };
        self.psql(&format!(
            "DO $$ BEGIN ASSERT (SELECT count(*) FROM {}) = {rows}; END $$",
            self.table
        ));
        rows as f64 / took.as_secs_f64()
    }

    /// Writes the first `rows` rows the `case` way; the time from the first row to the last
    /// commit (connections opened before).
    async fn write(&self, case: Case, rows: usize) -> Duration {
        let pg = PgPool::connect_with(self.options.clone())
            .await
            .expect("connect");
        let table = self.table.clone();
        let coordinator = Coordinator::builder()
            .scan_os_threads(false)
            .shutdown_timeout(Duration::from_secs(600))
            .build();
        let took = coordinator
            .scope(async {
                let db = Database::connect(DatabaseOptions::new(&self.url, "copy-bench"))
                    .await
                    .expect("connect");
                let started = Instant::now();
                match case {
                    Case::CopyRows => {
                        let mut conn = pg.acquire().await.expect("acquire");
                        for batch in self.rows[..rows].chunks(COPY_BATCH) {
                            copy_rows(&mut conn, &table, &["id", "body", "at"], batch)
                                .await
                                .expect("copy");
                        }
                    }
                    Case::CopyWriter => {
                        let writer = copy_writer(&db, pg.clone(), table);
                        push_all(&writer, &self.rows[..rows]).await;
                    }
                    Case::InsertWriter => {
                        let writer = insert_writer(&db, table);
                        push_all(&writer, &self.rows[..rows]).await;
                    }
                    Case::InsertPerRow => {
                        let insert = format!(
                            "INSERT INTO {table} (id, body, at) VALUES ($1, $2, to_timestamp($3))"
                        );
                        for (id, body, at) in &self.rows[..rows] {
                            sqlx::query(AssertSqlSafe(insert.as_str()))
                                .bind(*id)
                                .bind(body.as_str())
                                .bind(seconds(*at))
                                .execute(&pg)
                                .await
                                .expect("insert");
                        }
                    }
                    Case::Psql => unreachable!("psql runs outside the runtime"),
                }
                // The writers' last rows are written by the final flush.
                let report = lifecycle_runtime::shutdown().await;
                assert!(report.is_clean(), "{report}");
                started.elapsed()
            })
            .await;
        pg.close().await;
        took
    }
}

fn seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

async fn push_all(writer: &BatchWriter<Event>, rows: &[Event]) {
    for row in rows {
        if writer.push_wait(row.clone()).await.is_err() {
            panic!("the writer refused a row");
        }
    }
}

fn copy_writer(db: &Database, pg: PgPool, table: String) -> BatchWriter<Event> {
    BatchWriter::builder("copy", db, move |_db: Database, rows: Arc<[Event]>| {
        let (pg, table) = (pg.clone(), table.clone());
        async move {
            let mut conn = pg.acquire().await.map_err(|source| CopyError::Database {
                table: table.clone(),
                source,
            })?;
            copy_rows(&mut conn, &table, &["id", "body", "at"], &rows)
                .await
                .map(drop)
        }
    })
    .max_batch(COPY_BATCH)
    .flush_timeout(Duration::from_secs(300))
    .spawn()
}

fn insert_writer(db: &Database, table: String) -> BatchWriter<Event> {
    let insert = format!("INSERT INTO {table} (id, body, at) VALUES ($1, $2, to_timestamp($3))");
    BatchWriter::builder("insert", db, move |db: Database, rows: Arc<[Event]>| {
        let insert = insert.clone();
        async move {
            let mut transaction = db.pool().begin().await?;
            for (id, body, at) in rows.iter() {
                sqlx::query(AssertSqlSafe(insert.as_str()))
                    .bind(*id)
                    .bind(body.as_str())
                    .bind(seconds(*at))
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await
        }
    })
    .max_batch(500)
    .flush_timeout(Duration::from_secs(300))
    .spawn()
}

/// `n` rows: ids in order, texts of 30 to 60 characters, a microsecond apart.
fn make_rows(n: usize) -> Vec<Event> {
    let start = SystemTime::now();
    let paths = [
        "/",
        "/api/v1/items",
        "/api/v1/orders/checkout",
        "/health/ready",
    ];
    (0..n)
        .map(|i| {
            let path = paths[i % paths.len()];
            let body = format!("GET {path} from host-{:03} took {}ms", i % 997, i % 89);
            (i as i64, body, start + Duration::from_micros(i as u64))
        })
        .collect()
}

fn main() {
    let rounds = announce(
        "copy --features postgres",
        "Writing 3-column rows into PostgreSQL: COPY against psql \\copy and INSERTs",
        3,
    );
    let rows: usize = std::env::var("ROWS").map_or(1_000_000, |text| {
        text.parse().expect("ROWS is a whole number")
    });
    let user = std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned());
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("postgres://{user}@127.0.0.1:5432/test"));
    let options: PgConnectOptions = url
        .parse()
        .expect("BENCH_DATABASE_URL is a postgres:// URL");
    let rows: Arc<[Event]> = make_rows(rows).into();
    let file =
        std::env::temp_dir().join(format!("lifecycle-copy-bench-{}.txt", std::process::id()));
    {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&file).expect("create the file"));
        for row in rows.iter() {
            out.write_all(CopyEncoder::line(row).as_bytes())
                .expect("write the file");
        }
        out.flush().expect("write the file");
    }
    let bench = Bench {
        url,
        options,
        table: format!("lifecycle_bench_copy_{}", std::process::id()),
        rows,
        file,
        runtime: common::runtime::two_worker_runtime(),
    };
    bench.psql(&format!(
        "CREATE TABLE {} (id bigint, body text, at timestamptz)",
        bench.table
    ));
    let cases = vec![
        Case::Psql,
        Case::CopyRows,
        Case::CopyWriter,
        Case::InsertWriter,
        Case::InsertPerRow,
    ];
    let samples = rounds::run(cases.clone(), rounds, |case| bench.measure(case));
    bench.psql(&format!("DROP TABLE {}", bench.table));
    let _ = std::fs::remove_file(&bench.file);

    let all = bench.rows.len();
    let mut table = Table::new(
        format!("{} rows (bigint, text, timestamptz), loopback", count(all)),
        &["how", "rows a round", "rows/s", "÷ psql \\copy"],
    );
    for &case in &cases {
        let rate = samples.median(case);
        table.row(vec![
            case.label().to_owned(),
            count(case.rows(all)),
            count(rate as usize),
            ratio(samples.ratio(case, Case::Psql)),
        ]);
    }
    table.print();
    let writer: Spread = samples.ratio(Case::CopyWriter, Case::Psql);
    let direct: Spread = samples.ratio(Case::CopyRows, Case::Psql);
    target(
        "COPY writer ≥ 0.5 × psql \\copy",
        writer.median >= 0.5,
        format!(
            "BatchWriter + copy_rows {:.2}×, copy_rows {:.2}× psql \\copy",
            writer.median, direct.median
        ),
    );
}
