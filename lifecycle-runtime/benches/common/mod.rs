//! What the benches share: the runtime they run on, the contenders' waiting tasks, interleaved
//! rounds of paired measurements, and what every bench prints.
#![allow(dead_code, reason = "each bench binary uses part of these helpers")]

pub mod crowd;
pub mod print;
pub mod rounds;
pub mod runtime;
