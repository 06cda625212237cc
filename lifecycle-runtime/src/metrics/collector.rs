//! Gauges from snapshots: one pass reads a [`Snapshot`] and sets every gauge (tasks by name and
//! state, groups, resources, pools, readiness); series that were set before and are gone now
//! (a name whose tasks all ended) are set to 0 once, then forgotten.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, counter};

use crate::coordinator::{Coordinator, with_current};
use crate::snapshot::{Readiness, Snapshot, TaskState};
use crate::workers::TaskHandle;

/// The most distinct task (and thread) names a pass gives series of their own; the rest are
/// counted under the name `other`, so names made per request cannot grow the series without
/// bound.
pub const MAX_NAMES: usize = 256;

/// The name tasks beyond [`MAX_NAMES`] are counted under.
pub const OTHER_NAME: &str = "other";

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// Sets the gauges of a [`Snapshot`]: what [`spawn_collector`] does every period, for a program
/// that takes snapshots itself. Keeps the series it set, to zero those that disappear.
///
/// ```
/// use lifecycle_runtime::metrics::Collector;
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// metrics::with_local_recorder(&recorder, || {
///     Collector::new().collect(&coordinator.snapshot());
/// });
/// let starting = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
///     let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
///     (key.key().name() == "lifecycle_readiness" && labels == [("phase", "starting")])
///         .then_some(value)
/// });
/// assert_eq!(starting, Some(DebugValue::Gauge(1.0.into())));
/// ```
#[derive(Debug, Default)]
pub struct Collector {
    /// The gauge series set by the last pass.
    set: HashSet<Key>,
}

impl Collector {
    /// A collector that has set nothing yet.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// One pass: sets every gauge from `snapshot` through the installed recorder, and zeroes the
    /// series of the previous pass that `snapshot` no longer has.
    pub fn collect(&mut self, snapshot: &Snapshot) {
        let mut gauges: HashMap<Key, f64> = HashMap::new();
        let mut put = |name: &'static str, labels: Vec<Label>, value: f64| {
            *gauges.entry(Key::from_parts(name, labels)).or_default() += value;
        };

        let mut names = Names::default();
        for task in &snapshot.tasks {
            let name = names.label(&task.name);
            put("lifecycle_tasks", by_name_state(name, task.state), 1.0);
        }
        for thread in &snapshot.threads {
            let name = names.label(&thread.name);
            put("lifecycle_threads", by_name_state(name, thread.state), 1.0);
        }
        put(
            "lifecycle_tasks_starting",
            Vec::new(),
            snapshot.starting as f64,
        );

        for phase in PHASES {
            let on = if snapshot.readiness == phase {
                1.0
            } else {
                0.0
            };
            put(
                "lifecycle_readiness",
                vec![Label::new("phase", phase.as_str())],
                on,
            );
        }

        for group in &snapshot.groups {
            let labels = || vec![Label::new("group", group.name.clone())];
            put(
                "lifecycle_group_permits_in_use",
                labels(),
                group.in_use as f64,
            );
            put(
                "lifecycle_group_permits_waiting",
                labels(),
                group.waiting as f64,
            );
            if let Some(max) = group.max_concurrent {
                put("lifecycle_group_permits_max", labels(), max as f64);
            }
        }

        put(
            "lifecycle_resources_open",
            Vec::new(),
            snapshot.resources.len() as f64,
        );

        for pool in &snapshot.pools {
            let labels = || vec![Label::new("pool", pool.name.clone())];
            let size = pool.size as usize;
            put("lifecycle_pool_connections", labels(), size as f64);
            let active = size.saturating_sub(pool.idle);
            put("lifecycle_pool_connections_active", labels(), active as f64);
            put(
                "lifecycle_pool_connections_idle",
                labels(),
                pool.idle as f64,
            );
            let max = f64::from(pool.max_connections);
            put("lifecycle_pool_connections_max", labels(), max);
            put(
                "lifecycle_pool_pending_acquires",
                labels(),
                pool.waiters as f64,
            );
        }

        let shutdown_elapsed = snapshot
            .shutdown
            .as_ref()
            .map_or(0.0, |view| view.elapsed.as_secs_f64());
        put(
            "lifecycle_shutdown_elapsed_seconds",
            Vec::new(),
            shutdown_elapsed,
        );

        let previous = std::mem::take(&mut self.set);
        metrics::with_recorder(|recorder| {
            for key in previous.difference(&gauges.keys().cloned().collect()) {
                recorder.register_gauge(key, &METADATA).set(0.0);
            }
            for (key, value) in &gauges {
                recorder.register_gauge(key, &METADATA).set(*value);
            }
        });
        self.set = gauges.into_keys().collect();

        let counters = &snapshot.counters;
        counter!("lifecycle_tasks_spawned_total").absolute(counters.spawned);
        counter!("lifecycle_tasks_completed_total").absolute(counters.completed);
        counter!("lifecycle_tasks_cancelled_total").absolute(counters.cancelled);
    }
}

/// Every readiness phase, one series each (`1` for the current one).
const PHASES: [Readiness; 5] = [
    Readiness::Starting,
    Readiness::Ready,
    Readiness::Draining,
    Readiness::Stopping,
    Readiness::Stopped,
];

/// Task names given series of their own in one pass, at most [`MAX_NAMES`].
#[derive(Default)]
struct Names<'a> {
    seen: HashSet<&'a str>,
}

impl<'a> Names<'a> {
    fn label(&mut self, name: &'a str) -> &'a str {
        if self.seen.contains(name) {
            return name;
        }
        if self.seen.len() < MAX_NAMES {
            self.seen.insert(name);
            return name;
        }
        OTHER_NAME
    }
}

fn by_name_state(name: &str, state: TaskState) -> Vec<Label> {
    vec![
        Label::new("name", name.to_owned()),
        Label::new("state", state_label(state)),
    ]
}

/// The `state` label: the snapshot's word for it.
fn state_label(state: TaskState) -> &'static str {
    match state {
        TaskState::Running => "running",
        TaskState::Idle => "idle",
        TaskState::Ticking => "ticking",
        TaskState::FinalTick => "final_tick",
        TaskState::Restarting => "restarting",
    }
}

/// Spawns the collector on the current coordinator: a tracked task named `lifecycle-metrics`
/// that sets the gauges from a [`snapshot`](crate::snapshot()) every `period`, and once more
/// when told to stop (so the last scrape sees `stopping`). Counters and histograms need no
/// collector: they are recorded as things happen. It describes every metric first
/// ([`describe`](super::describe)).
///
/// Start it once the program's recorder is installed (the recorder is looked up on each pass).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// use std::time::Duration;
///
/// let collector = lifecycle_runtime::metrics::spawn_collector(Duration::from_secs(5));
/// assert_eq!(collector.name(), "lifecycle-metrics");
/// let report = lifecycle_runtime::shutdown().await;
/// assert!(report.is_clean(), "{report}");
/// # }).await;
/// # }
/// ```
#[track_caller]
pub fn spawn_collector(period: Duration) -> TaskHandle {
    with_current(|coordinator| spawn_collector_on(coordinator, period))
}

fn spawn_collector_on(coordinator: &Coordinator, period: Duration) -> TaskHandle {
    let watched = coordinator.clone();
    let shutdown = coordinator.shutdown_signal();
    coordinator.spawn("lifecycle-metrics", async move {
        super::describe();
        let mut collector = Collector::new();
        loop {
            collector.collect(&watched.snapshot());
            if !shutdown.sleep(period).await {
                break;
            }
        }
        collector.collect(&watched.snapshot());
    })
}
