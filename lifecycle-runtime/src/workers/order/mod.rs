//! The stop order: which workers are told to stop only after others ended (a batch writer after
//! the HTTP server that feeds it, a consumer after its producers). Declared by name, checked for
//! cycles when declared, turned into stages when workers are told to stop.
//!
//! A name declared to stop after others is in stage `1 + the highest stage among them`; every
//! other name is in stage 0, told to stop at the stop signal as before. Stage `k` is told to stop
//! once no worker of an earlier stage is left unjudged: each has ended, or was aborted or given
//! up on at its stop timeout. A staged worker's stop timeout runs from its stage's start, and the
//! budget caps it as it caps every other.
//!
//! A *family* name (an HTTP server's) also covers every worker named `<family> …` (its
//! connections, `admin connection`, and requests, `admin GET /x`): they stand where the family
//! does, so a server declared to stop after others keeps serving, with its connections and
//! requests, until its stage is told.
//!
//! Nothing here costs a program that declares no order: the hot paths ask [`StopOrder::is_used`]
//! (one atomic load) and go no further.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

use super::StopSignal;
use crate::util::sync::{AtomicBool, Ordering};

/// A stop order that cannot be declared: it would close a cycle (`name` stops after workers
/// that, through others, stop after `name`), or it names nothing to stop after.
///
/// ```
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// coordinator.stop_after("writer", ["http"]).unwrap();
/// let error = coordinator.stop_after("http", ["writer"]).unwrap_err();
/// assert_eq!(error.cycle(), ["http", "writer", "http"]);
/// assert!(error.to_string().contains("`http` → `writer` → `http`"));
/// let error = coordinator.stop_after("metrics", Vec::<String>::new()).unwrap_err();
/// assert!(error.cycle().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOrderError {
    cycle: Vec<String>,
    name: String,
}

impl StopOrderError {
    /// The names on the cycle, starting and ending with the name being declared (empty when the
    /// declaration named nothing to stop after).
    pub fn cycle(&self) -> &[String] {
        &self.cycle
    }
}

impl fmt::Display for StopOrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cycle.is_empty() {
            return write!(
                f,
                "`{}` is declared to stop after nothing; name the workers it stops after, or \
                 leave it out of the stop order",
                self.name
            );
        }
        write!(
            f,
            "stop order cycle: {} (each stops after the next); remove one of these `stop_after` \
             declarations",
            Chain(&self.cycle)
        )
    }
}

impl std::error::Error for StopOrderError {}

struct Chain<'a>(&'a [String]);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, name) in self.0.iter().enumerate() {
            if at > 0 {
                f.write_str(" → ")?;
            }
            write!(f, "`{name}`")?;
        }
        Ok(())
    }
}

/// Where a worker's name stands in the stop order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Staged {
    /// Not declared: stage 0, told to stop at the stop signal.
    No,
    /// In a stage not told to stop yet.
    Held(usize),
    /// In a stage told to stop at the instant given.
    Started(usize, Instant),
}

impl Staged {
    /// The stage number (0 for a name in no declared order).
    pub(crate) fn stage(self) -> usize {
        match self {
            Staged::No => 0,
            Staged::Held(stage) | Staged::Started(stage, _) => stage,
        }
    }
}

/// Why a stage was told to stop when it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Stage 0: at the stop signal.
    StopSignal,
    /// Every worker of the stages before it had ended, or was aborted or given up on.
    EarlierDone,
    /// The shutdown budget ran out with earlier workers still there.
    Budget,
    /// Its name was declared after workers were told to stop.
    LateDeclared,
}

/// A stage of a frozen order, for the report.
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub(crate) number: usize,
    pub(crate) names: Vec<String>,
    /// What its names stop after.
    pub(crate) after: Vec<String>,
    pub(crate) started: Option<Instant>,
    pub(crate) why: Why,
    /// Not given its line in the report yet.
    pub(crate) to_report: bool,
}

#[derive(Debug, Default)]
pub(crate) struct StopOrder {
    used: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Name → the names it stops after, as declared (sorted: reports read the same each run).
    after: BTreeMap<String, Vec<String>>,
    /// The signal each declared name's workers watch.
    signals: HashMap<String, StopSignal>,
    /// Names whose stage also covers every worker named `<name> …` (HTTP servers).
    families: Vec<String>,
    /// Set when workers are told to stop: each declared name's stage, and when each stage
    /// started (index 0, stage 0, starts at the stop signal).
    frozen: Option<Frozen>,
}

#[derive(Debug)]
struct Frozen {
    stage_of: HashMap<String, usize>,
    started: Vec<Option<Instant>>,
    /// Why each started stage started when it did.
    why: Vec<Why>,
    /// Stages already given a line in the report.
    reported: usize,
}

impl StopOrder {
    /// Whether any order was declared: when not, nothing else here is ever asked.
    #[inline]
    pub(crate) fn is_used(&self) -> bool {
        self.used.load(Ordering::Acquire)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Declares that workers named `name` stop after every worker named in `after`; returns the
    /// signal they watch. Declaring again adds to what was declared. Nothing changes on error.
    pub(crate) fn declare(
        &self,
        name: &str,
        after: &[String],
    ) -> Result<StopSignal, StopOrderError> {
        if after.is_empty() {
            return Err(StopOrderError {
                cycle: Vec::new(),
                name: name.to_owned(),
            });
        }
        let mut inner = self.inner();
        for before in after {
            if let Some(path) = inner.path(before, name) {
                let mut cycle = Vec::with_capacity(path.len() + 1);
                cycle.push(name.to_owned());
                cycle.extend(path);
                return Err(StopOrderError {
                    cycle,
                    name: name.to_owned(),
                });
            }
        }
        let list = inner.after.entry(name.to_owned()).or_default();
        for before in after {
            if !list.contains(before) {
                list.push(before.clone());
            }
        }
        let signal = inner.signals.entry(name.to_owned()).or_default().clone();
        // Declared after workers were told to stop: it joins its stage, and is told at once when
        // that stage has started. A new stage after the last one starts with it if every stage
        // before it has (step 3 may be over: nothing else would start it), else step 3 starts
        // it in turn.
        if let Some(stage) = inner.late_stage(name) {
            let frozen = inner.frozen.as_mut().expect("placed in a frozen order");
            frozen.stage_of.insert(name.to_owned(), stage);
            if frozen.started.len() <= stage {
                let all_started = frozen.started.iter().all(Option::is_some);
                let start = all_started.then(Instant::now);
                frozen.started.resize(stage + 1, start);
                frozen.why.resize(stage + 1, Why::LateDeclared);
            }
            if frozen.started[stage].is_some() {
                signal.fire();
            }
        }
        self.used.store(true, Ordering::Release);
        Ok(signal)
    }

    /// Declares `name` as [`declare`](Self::declare) does, and makes it a family: a worker named
    /// `<name> …` (a space after the name) stands where `name` does, unless its own name is
    /// declared.
    #[cfg(any(test, feature = "http"))]
    pub(crate) fn declare_family(
        &self,
        name: &str,
        after: &[String],
    ) -> Result<StopSignal, StopOrderError> {
        let signal = self.declare(name, after)?;
        let mut inner = self.inner();
        if !inner.families.iter().any(|family| family == name) {
            inner.families.push(name.to_owned());
        }
        Ok(signal)
    }

    /// The signal workers named `name` watch, when the name is in a declared order (or is
    /// `<family> …` of a declared family).
    pub(crate) fn signal(&self, name: &str) -> Option<StopSignal> {
        if !self.is_used() {
            return None;
        }
        let inner = self.inner();
        inner
            .signals
            .get(name)
            .or_else(|| {
                inner
                    .family_of(name)
                    .and_then(|family| inner.signals.get(family))
            })
            .cloned()
    }

    /// Makes `name`, already declared, a family (an HTTP server declared to stop after others
    /// through [`Coordinator::stop_after`](crate::Coordinator::stop_after) rather than its own
    /// builder). Returns whether `name` is declared.
    #[cfg(feature = "http")]
    pub(crate) fn make_family(&self, name: &str) -> bool {
        if !self.is_used() {
            return false;
        }
        let mut inner = self.inner();
        if !inner.signals.contains_key(name) {
            return false;
        }
        if !inner.families.iter().any(|family| family == name) {
            inner.families.push(name.to_owned());
        }
        true
    }

    /// Turns the declarations into stages (workers are being told to stop); stage 0 starts now.
    pub(crate) fn freeze(&self, now: Instant) {
        if !self.is_used() {
            return;
        }
        let mut inner = self.inner();
        if inner.frozen.is_some() {
            return;
        }
        let mut stage_of = HashMap::new();
        let names: Vec<String> = inner.after.keys().cloned().collect();
        for name in &names {
            inner.stage(name, &mut stage_of);
        }
        let stages = stage_of.values().copied().max().unwrap_or(0);
        let mut started = vec![None; stages + 1];
        started[0] = Some(now);
        let why = vec![Why::StopSignal; started.len()];
        inner.frozen = Some(Frozen {
            stage_of,
            started,
            why,
            reported: 0,
        });
    }

    /// Where `name` stands. `Staged::No` before the order is frozen, or when none is declared.
    #[cfg(any(test, feature = "postgres", feature = "sqlite"))]
    pub(crate) fn staged(&self, name: &str) -> Staged {
        if !self.is_used() {
            return Staged::No;
        }
        self.with_staged(|staged| staged(name))
    }

    /// A lookup of many names under one lock: `f` gets a function from name to standing.
    pub(crate) fn with_staged<R>(&self, f: impl FnOnce(&dyn Fn(&str) -> Staged) -> R) -> R {
        let inner = self.inner();
        let lookup = |name: &str| -> Staged {
            let Some(frozen) = &inner.frozen else {
                return Staged::No;
            };
            let stage = frozen.stage_of.get(name).or_else(|| {
                inner
                    .family_of(name)
                    .and_then(|family| frozen.stage_of.get(family))
            });
            match stage {
                None | Some(0) => Staged::No,
                Some(&stage) => match frozen.started[stage] {
                    Some(at) => Staged::Started(stage, at),
                    None => Staged::Held(stage),
                },
            }
        };
        f(&lookup)
    }

    /// Whether some stage is not told to stop yet.
    pub(crate) fn has_held(&self) -> bool {
        self.is_used()
            && self
                .inner()
                .frozen
                .as_ref()
                .is_some_and(|frozen| frozen.started.iter().any(Option::is_none))
    }

    /// Starts every stage up to `through` not started yet: fires its names' signals. Returns the
    /// names told to stop now.
    pub(crate) fn start_through(&self, through: usize, now: Instant, why: Why) -> Vec<String> {
        let mut inner = self.inner();
        let Inner {
            frozen, signals, ..
        } = &mut *inner;
        let Some(frozen) = frozen.as_mut() else {
            return Vec::new();
        };
        let mut told = Vec::new();
        let last = through.min(frozen.started.len().saturating_sub(1));
        for stage in 1..=last {
            if frozen.started[stage].is_some() {
                continue;
            }
            frozen.started[stage] = Some(now);
            frozen.why[stage] = why;
            for (name, _) in frozen.stage_of.iter().filter(|(_, at)| **at == stage) {
                if let Some(signal) = signals.get(name) {
                    signal.fire();
                }
                told.push(name.clone());
            }
        }
        told
    }

    /// The stages after stage 0, for the report (empty when no order was declared): each
    /// started one is `to_report` once, the first time this is asked after it started.
    /// With `mark` false, nothing is marked reported (a live view).
    pub(crate) fn stages(&self, mark: bool) -> Vec<Stage> {
        if !self.is_used() {
            return Vec::new();
        }
        let mut inner = self.inner();
        let Some(frozen) = &mut inner.frozen else {
            return Vec::new();
        };
        let reported = frozen.reported;
        // Stages start in order: the started ones are a prefix.
        let started = frozen.started.iter().take_while(|at| at.is_some()).count();
        if mark {
            frozen.reported = frozen.reported.max(started.saturating_sub(1));
        }
        let inner = &*inner;
        let frozen = inner.frozen.as_ref().expect("checked above");
        (1..frozen.started.len())
            .map(|number| {
                let mut names: Vec<String> = frozen
                    .stage_of
                    .iter()
                    .filter(|(_, stage)| **stage == number)
                    .map(|(name, _)| name.clone())
                    .collect();
                names.sort();
                let mut after: Vec<String> = names
                    .iter()
                    .flat_map(|name| inner.after.get(name).into_iter().flatten().cloned())
                    .collect();
                after.sort();
                after.dedup();
                Stage {
                    number,
                    names,
                    after,
                    started: frozen.started[number],
                    why: frozen.why[number],
                    to_report: number > reported && frozen.started[number].is_some(),
                }
            })
            .collect()
    }
}

impl Inner {
    /// The longest family `name` belongs to (`name` is `<family> …`).
    fn family_of(&self, name: &str) -> Option<&str> {
        self.families
            .iter()
            .filter(|family| {
                name.len() > family.len()
                    && name.starts_with(family.as_str())
                    && name.as_bytes()[family.len()] == b' '
            })
            .max_by_key(|family| family.len())
            .map(String::as_str)
    }

    /// A path of declarations from `from` to `to` (`from` stops after …, which stops after `to`),
    /// both ends included.
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        if from == to {
            return Some(vec![to.to_owned()]);
        }
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![vec![from.to_owned()]];
        while let Some(path) = stack.pop() {
            let last = path.last().expect("paths are never empty");
            if !seen.insert(last.clone()) {
                continue;
            }
            for next in self.after.get(last).into_iter().flatten() {
                let mut longer = path.clone();
                longer.push(next.clone());
                if next == to {
                    return Some(longer);
                }
                stack.push(longer);
            }
        }
        None
    }

    /// The stage of `name`, memoised in `stage_of`. The declarations have no cycle.
    fn stage(&self, name: &str, stage_of: &mut HashMap<String, usize>) -> usize {
        if let Some(&stage) = stage_of.get(name) {
            return stage;
        }
        let stage = match self.after.get(name) {
            None => 0,
            Some(after) => {
                1 + after
                    .iter()
                    .map(|before| self.stage(before, stage_of))
                    .max()
                    .unwrap_or(0)
            }
        };
        stage_of.insert(name.to_owned(), stage);
        stage
    }

    /// For a name declared after the order was frozen: its stage, from the stages known then.
    fn late_stage(&self, name: &str) -> Option<usize> {
        let frozen = self.frozen.as_ref()?;
        let stage = 1 + self
            .after
            .get(name)?
            .iter()
            .map(|before| frozen.stage_of.get(before).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        Some(stage)
    }
}

#[cfg(test)]
mod tests;
