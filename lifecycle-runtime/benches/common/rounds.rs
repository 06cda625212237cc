//! Interleaved rounds. Each round runs every case once, in an order rotated by one each round, so
//! a slow stretch of a busy machine falls on all contenders alike. Figures are medians; a ratio is
//! paired: contender / baseline within the same round, then the median of those ratios.

use std::fmt::Debug;
use std::io::Write;

use crate::common::runtime::heap_in_use;

/// Rounds of the timing benches when `ROUNDS` is not set.
pub const DEFAULT_ROUNDS: usize = 15;

/// Rounds to run: `ROUNDS` from the environment, else `default`.
///
/// # Panics
///
/// If `ROUNDS` is set but not a whole number of at least 1.
pub fn rounds_or(default: usize) -> usize {
    match std::env::var("ROUNDS") {
        Err(_) => default,
        Ok(text) => match text.trim().parse() {
            Ok(rounds) if rounds >= 1 => rounds,
            _ => panic!("ROUNDS must be a whole number of at least 1, not {text:?}"),
        },
    }
}

/// What the rounds measured: a value per case and round, and the heap in use after each round.
#[derive(Debug)]
pub struct Samples<C> {
    cases: Vec<C>,
    values: Vec<Vec<f64>>,
    heap_after_round: Vec<Option<usize>>,
}

/// Runs one warm-up round (its values are dropped), then `rounds` rounds of every case.
pub fn run<C: Copy>(cases: Vec<C>, rounds: usize, mut measure: impl FnMut(C) -> f64) -> Samples<C> {
    eprint!("warm-up round");
    cases.iter().for_each(|&case| {
        measure(case);
    });
    let mut values = vec![Vec::with_capacity(rounds); cases.len()];
    let mut heap_after_round = Vec::with_capacity(rounds);
    for round in 0..rounds {
        eprint!(", {}", round + 1);
        let _ = std::io::stderr().flush();
        for k in 0..cases.len() {
            let case = (k + round) % cases.len();
            values[case].push(measure(cases[case]));
        }
        heap_after_round.push(heap_in_use());
    }
    eprintln!();
    Samples {
        cases,
        values,
        heap_after_round,
    }
}

impl<C: Copy + PartialEq + Debug> Samples<C> {
    /// Whether `case` was among the cases run.
    pub fn ran(&self, case: C) -> bool {
        self.cases.contains(&case)
    }

    /// The values of `case`, one per round.
    ///
    /// # Panics
    ///
    /// If `case` was not run.
    pub fn of(&self, case: C) -> &[f64] {
        match self.cases.iter().position(|&c| c == case) {
            Some(index) => &self.values[index],
            None => panic!("{case:?} was not run"),
        }
    }

    /// The median of `case` over the rounds.
    pub fn median(&self, case: C) -> f64 {
        Spread::of(self.of(case).to_vec()).median
    }

    /// `case / baseline`, paired by round.
    pub fn ratio(&self, case: C, baseline: C) -> Spread {
        Spread::of(paired(self.of(case), self.of(baseline), |a, b| a / b))
    }

    /// `case - baseline`, paired by round.
    pub fn difference(&self, case: C, baseline: C) -> Spread {
        Spread::of(paired(self.of(case), self.of(baseline), |a, b| a - b))
    }

    /// The cases, in the order given.
    pub fn cases(&self) -> &[C] {
        &self.cases
    }

    /// Heap in use after each round, where the allocator tells it.
    pub fn heap_after_round(&self) -> &[Option<usize>] {
        &self.heap_after_round
    }
}

/// Combines two series round by round.
pub fn paired(a: &[f64], b: &[f64], combine: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    assert_eq!(a.len(), b.len(), "paired series have one value per round");
    a.iter().zip(b).map(|(&a, &b)| combine(a, b)).collect()
}

/// The median of a series and its middle half.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    /// First quartile.
    pub low: f64,
    /// Third quartile.
    pub high: f64,
}

impl Spread {
    /// # Panics
    ///
    /// If `values` is empty or holds a NaN.
    pub fn of(mut values: Vec<f64>) -> Spread {
        assert!(!values.is_empty(), "a spread of no values");
        values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN among the measurements"));
        Spread {
            median: quantile(&values, 0.5),
            low: quantile(&values, 0.25),
            high: quantile(&values, 0.75),
        }
    }
}

/// The `q` quantile of sorted values, interpolated between neighbours.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (below, above) = (at.floor() as usize, at.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (at - below as f64)
}
