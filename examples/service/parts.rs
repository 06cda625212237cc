//! The demo's moving parts besides the HTTP server: a heartbeat loop, a journal of accepted
//! items flushed by a loop with one last tick at shutdown, the managed resource that owns the
//! journal, and a blocking sampler on its own OS thread.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lifecycle_runtime::db::BatchWriter;
use lifecycle_runtime::{Managed, Shutdown, background, managed_resource};

use crate::api::Item;

/// What the parts share.
#[derive(Default)]
pub(crate) struct Stats {
    /// Items the batch writer accepted (each answered 202).
    pub(crate) accepted: AtomicU64,
    /// Items refused (each answered 503).
    pub(crate) refused: AtomicU64,
    pub(crate) journaled: AtomicU64,
    pub(crate) load_samples: AtomicU64,
    /// Ids of accepted items waiting for the journal's flusher.
    pub(crate) journal_buffer: Mutex<Vec<i64>>,
}

/// Logs progress once a second.
#[background(interval = "1s", shutdown, name = "heartbeat")]
pub(crate) async fn heartbeat(stats: Arc<Stats>, items: BatchWriter<Item>) {
    let written = items.stats();
    tracing::info!(
        accepted = stats.accepted.load(Ordering::Relaxed),
        refused = stats.refused.load(Ordering::Relaxed),
        written = written.written,
        pending = written.pending,
        journaled = stats.journaled.load(Ordering::Relaxed),
        load_samples = stats.load_samples.load(Ordering::Relaxed),
        "alive"
    );
}

/// An append-only journal of accepted item ids, buffered in memory.
pub(crate) struct Journal {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl Journal {
    pub(crate) fn open(path: &std::path::Path) -> std::io::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Journal {
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    fn append(&self, ids: &[i64]) -> std::io::Result<()> {
        let mut file = self.file.lock().expect("journal lock");
        for id in ids {
            writeln!(file, "accepted item {id}")?;
        }
        Ok(())
    }

    /// Writes what is buffered to disk: the journal's close.
    async fn flush(&self) -> std::io::Result<()> {
        let mut file = self.file.lock().expect("journal lock");
        file.flush()?;
        file.get_ref().sync_data()
    }
}

/// Where the journal lives. Closing it flushes the journal; the path needs nothing.
#[managed_resource(close_timeout = "2s", name = "store")]
pub(crate) struct Store {
    #[close(with = Journal::flush)]
    pub(crate) journal: Journal,
    pub(crate) path: PathBuf,
}

/// Appends accepted ids to the journal every 500ms, and once more at shutdown so none is lost.
#[background(interval = "500ms", shutdown = "final_tick", name = "flusher")]
pub(crate) async fn flusher(
    stats: Arc<Stats>,
    store: Managed<Store>,
    shutdown: Shutdown,
) -> Result<(), std::io::Error> {
    let batch: Vec<i64> = std::mem::take(&mut *stats.journal_buffer.lock().expect("buffer lock"));
    if !batch.is_empty() {
        store.journal.append(&batch)?;
        stats
            .journaled
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    if shutdown.is_triggered() {
        tracing::info!(rows = batch.len(), journal = %store.path.display(), "final flush");
    }
    Ok(())
}

/// Samples the system load on its own thread (a blocking read), every 200ms.
#[background(interval = "200ms", shutdown, thread, name = "load-sampler")]
pub(crate) fn load_sampler(stats: Arc<Stats>) {
    if std::fs::read_to_string("/proc/loadavg").is_ok() {
        stats.load_samples.fetch_add(1, Ordering::Relaxed);
    }
}
