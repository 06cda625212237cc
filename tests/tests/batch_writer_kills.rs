//! `BatchWriter` in a process that is killed: after SIGTERM (a clean shutdown) every accepted row
//! and every committed write is in the table, once; after SIGKILL (no shutdown at all) every
//! write that returned `Ok` is. The writer is `fixtures/writer.rs`; it prints what it was told
//! (`accepted N`, `committed N`) and the table is checked against that.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::Watchdog;
use lifecycle_runtime::db::{Database, DatabaseOptions};
use lifecycle_tests::pg::PgCluster;

const HANG: Duration = Duration::from_secs(600);

/// Tasks writing with the committed-write API beside the pushes, in the SIGTERM test.
const COMMITTERS: u64 = 2;

/// A small deterministic generator of kill moments (no dependency for one test).
fn kill_moments(seed: u64) -> impl Iterator<Item = Duration> {
    let mut state = seed;
    std::iter::from_fn(move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Some(Duration::from_micros((state >> 33) % 150_000))
    })
}

/// What the fixture printed on stdout.
#[derive(Default)]
struct Said {
    /// `accepted N`: rows `push_wait` accepted, in order.
    accepted: Vec<i64>,
    /// `pending at shutdown N`.
    pending: Option<u64>,
    /// `committed N`: rows whose `write` returned `Ok`.
    committed: Vec<i64>,
    /// `write failed ...` lines.
    failed: Vec<String>,
}

impl Said {
    fn hear(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("accepted ") {
            self.accepted.push(n.parse().unwrap());
        } else if let Some(count) = line.strip_prefix("pending at shutdown ") {
            self.pending = Some(count.parse().unwrap());
        } else if let Some(n) = line.strip_prefix("committed ") {
            self.committed.push(n.parse().unwrap());
        } else if line.starts_with("write failed ") {
            self.failed.push(line.to_owned());
        }
    }

    /// Everything on `stdout`, to its end.
    fn all_of(stdout: ChildStdout) -> Said {
        let mut said = Said::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            said.hear(&line);
        }
        said
    }
}

fn writer_fixture(url: &str, run: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifecycle-fixture-writer"));
    command
        .env("DATABASE_URL", url)
        .env("RUN", run.to_string())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Reads `child`'s stderr up to its `ready` line, failing with what it said otherwise.
fn wait_ready(child: &mut Child, run: u32) -> impl Iterator<Item = String> + use<> {
    let stderr = child.stderr.take().unwrap();
    let mut stderr = BufReader::new(stderr).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    for line in stderr.by_ref() {
        let ready = line == "ready";
        seen.push(line);
        if ready {
            break;
        }
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("ready"),
        "run {run} never got ready:\n{}",
        seen.join("\n")
    );
    stderr
}

#[test]
fn no_accepted_row_is_lost_when_the_writer_is_sent_sigterm_at_random_200_times() {
    let _watchdog = Watchdog::new("no_data_lost", HANG);
    let Some(cluster) = PgCluster::start(50) else {
        return;
    };
    cluster.psql("CREATE TABLE rows (run int8, n int8); GRANT ALL ON rows TO app");
    let mut moments = kill_moments(20261122);
    let mut total_accepted = 0u64;
    let mut total_committed = 0u64;
    // Runs whose final flush had rows to write, and how many it had in all.
    let mut runs_with_pending = 0u32;
    let mut total_pending = 0u64;
    // Runs in which some `write` returned `Ok` before the kill.
    let mut runs_with_committed = 0u32;
    // The longest time from SIGTERM to exit.
    let mut slowest = Duration::ZERO;
    for run in 0..200u32 {
        let mut child = writer_fixture(&cluster.url(), run)
            .env("COMMITTED", COMMITTERS.to_string())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let said = std::thread::spawn(move || Said::all_of(stdout));
        let stderr = wait_ready(&mut child, run);
        std::thread::sleep(moments.next().unwrap());
        let signalled = std::time::Instant::now();
        // SAFETY: kill(2) on our own child with a valid signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let rest: Vec<String> = stderr.collect();
        let status = child.wait().unwrap();
        slowest = slowest.max(signalled.elapsed());
        assert_eq!(
            status.code(),
            Some(0),
            "run {run} did not stop cleanly:\n{}",
            rest.join("\n")
        );
        let said = said.join().unwrap();
        let pending = said.pending.unwrap_or_else(|| {
            panic!(
                "run {run}: the writer did not say what was pending at shutdown:\n{}",
                rest.join("\n")
            )
        });
        // Accepted rows are 0..k, each said once.
        let k = said.accepted.len() as i64;
        assert!(
            said.accepted.iter().copied().eq(0..k),
            "run {run}: accepted rows are not 0..{k}"
        );
        // Exactly those rows are stored, each once: none lost, none doubled, none extra.
        let stored = cluster.psql(&format!(
            "SELECT count(*), count(DISTINCT n), coalesce(min(n), -1), coalesce(max(n), -1) \
             FROM rows WHERE run = {run} AND n >= 0"
        ));
        let expected = if k == 0 {
            "0|0|-1|-1".to_owned()
        } else {
            format!("{k}|{k}|0|{}", k - 1)
        };
        assert_eq!(
            stored, expected,
            "run {run}: {k} rows accepted; stored (rows|distinct|min|max) {stored}"
        );
        // Every committed write is stored, once; none failed.
        assert!(said.failed.is_empty(), "run {run}: {:?}", said.failed);
        let written = stored_rows(&cluster, run, "n < 0");
        let distinct: BTreeSet<i64> = written.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            written.len(),
            "run {run}: a write stored twice"
        );
        let lost: Vec<i64> = said
            .committed
            .iter()
            .filter(|n| !distinct.contains(n))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "run {run}: `write` returned Ok for {lost:?}, not in the table"
        );
        // The report agrees: the writer closed with nothing unwritten.
        let report = rest.join("\n");
        assert!(
            report.contains("closed    resource batch-writer rows"),
            "run {run}:\n{report}"
        );
        // Pending counts the committers' items too: one each at most.
        assert!(
            pending <= k as u64 + COMMITTERS,
            "run {run}: {pending} pending of {k} accepted and {COMMITTERS} committed writes"
        );
        if pending > 0 {
            runs_with_pending += 1;
        }
        total_pending += pending;
        total_accepted += k as u64;
        total_committed += said.committed.len() as u64;
        if !said.committed.is_empty() {
            runs_with_committed += 1;
        }
    }
    lifecycle_tests::record_fault_time(slowest);
    // The writer's budget is 10 s: the promise, and 60 ms for measuring from outside.
    assert!(
        slowest <= Duration::from_millis(10_160),
        "a run took {slowest:?} from SIGTERM to exit"
    );
    eprintln!(
        "{total_accepted} accepted rows and {total_committed} committed writes (in \
         {runs_with_committed} runs) over 200 kills, none lost; the final flush had \
         {total_pending} rows to write in {runs_with_pending} runs"
    );
    // The kills hit a writer at work: many rows per run, and rows still buffered in most runs.
    assert!(
        total_accepted > 200 * 100,
        "the runs wrote too little to prove anything ({total_accepted} rows)"
    );
    // Committed writes depend on how fast batches commit before the kill (fewer on a loaded
    // machine): what proves something is that most runs had some to check.
    assert!(
        runs_with_committed >= 150 && total_committed > 200 * 3,
        "the runs made too few committed writes to prove anything ({total_committed}, in \
         {runs_with_committed} of 200 runs)"
    );
    assert!(
        runs_with_pending >= 100,
        "the final flush had work in only {runs_with_pending} of 200 runs"
    );
}

/// The `n` of run `run`'s rows where `condition` holds.
fn stored_rows(cluster: &PgCluster, run: u32, condition: &str) -> Vec<i64> {
    cluster
        .psql(&format!(
            "SELECT n FROM rows WHERE run = {run} AND {condition}"
        ))
        .lines()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// SIGKILL leaves no shutdown, no final flush: only what was committed survives. Every write the
/// fixture was told `Ok` for must be among it. The kill comes right after the `Ok`s the test
/// waited for, while four tasks keep writing (each batch pauses 3 ms before its commit, so writes
/// are always accepted and not yet committed: a `write` that answered before the commit would lose
/// some).
#[test]
fn every_committed_write_survives_sigkill_right_after_it() {
    let _watchdog = Watchdog::new("sigkill", Duration::from_secs(120));
    let path =
        std::env::temp_dir().join(format!("lifecycle-sigkill-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut total_committed = 0;
    for run in 0..20u32 {
        let mut child = writer_fixture(&url, run)
            .env("PUSHES", "0")
            .env("COMMITTED", "4")
            .env("WRITE_DELAY_MS", "3")
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // Kill right after the `Ok` number 1 + 37 × run mod 150 (a different moment each run).
        let kill_after = 1 + (run as usize * 37) % 150;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut said = Said::default();
        while said.committed.len() < kill_after {
            match lines.next() {
                Some(Ok(line)) => said.hear(&line),
                _ => break,
            }
        }
        // SAFETY: kill(2) on our own child with a valid signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        // What it printed before it died is still in the pipe.
        for line in lines.map_while(Result::ok) {
            said.hear(&line);
        }
        let status = child.wait().unwrap();
        let errors = errors.join().unwrap();
        assert!(
            said.committed.len() >= kill_after,
            "run {run}: the fixture said {} Oks and ended ({status}):\n{errors}",
            said.committed.len()
        );
        assert!(said.failed.is_empty(), "run {run}: {:?}", said.failed);
        let stored = sqlite_rows(&path, run);
        let lost: Vec<i64> = said
            .committed
            .iter()
            .filter(|n| !stored.contains(n))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "run {run}: killed after {} Oks; `write` returned Ok for {} rows not in the table, \
             among them {:?}",
            said.committed.len(),
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        total_committed += said.committed.len();
    }
    eprintln!("{total_committed} committed writes over 20 SIGKILLs, all in the table");
    let _ = std::fs::remove_file(&path);
}

/// Run `run`'s rows in the SQLite file at `path`, read by a fresh connection.
fn sqlite_rows(path: &std::path::Path, run: u32) -> BTreeSet<i64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let coordinator = common::coordinator();
        coordinator
            .scope(async {
                let db = Database::connect(DatabaseOptions::sqlite(path, "sigkill-check"))
                    .await
                    .unwrap();
                let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM rows WHERE run = $1")
                    .bind(i64::from(run))
                    .fetch_all(db.pool())
                    .await
                    .unwrap();
                let report = lifecycle_runtime::shutdown().await;
                assert!(report.is_clean(), "{report}");
                rows.into_iter().collect()
            })
            .await
    })
}
