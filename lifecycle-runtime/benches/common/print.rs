//! What every bench prints: how to run it, its tables, a verdict per target, and whether the
//! rounds returned their memory.

use std::fmt::{Debug, Display};

use crate::common::rounds::{self, Samples, Spread};

/// Says what the bench measures, how to run it, and how its figures are made; returns the rounds
/// to run (`ROUNDS`, else `default_rounds`).
pub fn announce(bench: &str, what: &str, default_rounds: usize) -> usize {
    let rounds = rounds::rounds_or(default_rounds);
    println!("# {what}");
    println!();
    println!("run with: ROUNDS={rounds} cargo bench -p lifecycle-runtime --bench {bench}");
    println!(
        "{rounds} rounds after one warm-up round; each round runs every case once, in an order \
         rotated each round. Figures are medians over the rounds; ratios are medians of per-round \
         ratios, with the middle half of them in brackets. Timings taken on a busy machine are \
         preliminary."
    );
    println!();
    rounds
}

/// A markdown table, columns padded; the first left-aligned, the others right-aligned.
#[derive(Debug)]
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|cell| cell.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|column| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (cell, &width))| match column {
                    0 => format!("{cell:<width$}"),
                    _ => format!("{cell:>width$}"),
                })
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        println!("## {}", self.title);
        println!();
        println!("{}", line(&self.header));
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(column, &width)| match column {
                0 => "-".repeat(width + 2),
                _ => format!("{}:", "-".repeat(width + 1)),
            })
            .collect();
        println!("|{}|", rule.join("|"));
        self.rows.iter().for_each(|row| println!("{}", line(row)));
        println!();
    }
}

/// One line per target: met or NOT met, with the numbers behind it.
pub fn target(what: impl Display, met: bool, numbers: impl Display) {
    let verdict = if met { "met" } else { "NOT met" };
    println!("target {what}: {verdict} ({numbers})");
}

/// Says whether the rounds gave their memory back: the heap in use after each round should not
/// grow once the first round has sized the runtime's and the allocator's caches.
pub fn heap_check<C: Copy + PartialEq + Debug>(samples: &Samples<C>, tasks_per_round: usize) {
    let heap: Option<Vec<usize>> = samples.heap_after_round().iter().copied().collect();
    match heap.as_deref() {
        Some(heap @ [first, .., last]) => {
            let growth = *last as f64 - *first as f64;
            let per_task = growth / ((heap.len() - 1) * tasks_per_round) as f64;
            let verdict = if per_task < 1.0 {
                "returned"
            } else {
                "NOT returned"
            };
            println!(
                "memory after the rounds: {verdict} (heap in use after round 1: {}, after the last: \
                 {}: {per_task:+.2} B per task per round)",
                mib(*first as f64),
                mib(*last as f64),
            );
        }
        _ => println!("memory after the rounds: not checked (needs glibc and 2 rounds or more)"),
    }
    println!(
        "every contender's tasks were gone before the next one ran (runtime's alive-task count)"
    );
}

/// `12.3 ns`.
pub fn ns(nanos: f64) -> String {
    format!("{nanos:.1} ns")
}

/// `12.34 µs`, from nanoseconds.
pub fn us(nanos: f64) -> String {
    format!("{:.2} µs", nanos / 1e3)
}

/// `12.34 ms`, from seconds.
pub fn ms(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

/// `115.2`, bytes to a tenth, never `-0.0`.
pub fn bytes(bytes: f64) -> String {
    let tenths = (bytes * 10.0).round();
    format!("{:.1}", if tenths == 0.0 { 0.0 } else { tenths / 10.0 })
}

/// `1.2 MiB`.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// `1.23× [1.20–1.27]`.
pub fn ratio(spread: Spread) -> String {
    format!(
        "{:.2}× [{:.2}–{:.2}]",
        spread.median, spread.low, spread.high
    )
}

/// `+115.2 [114.0–116.1]`.
pub fn difference(spread: Spread) -> String {
    format!(
        "{:+.1} [{:+.1}–{:+.1}]",
        spread.median, spread.low, spread.high
    )
}

/// `10,000`.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}
