//! Loom models of the early-close claim: [`CloseState::claim_or_wait`] (what `Managed::close` and
//! shutdown's close both run), [`ClaimGuard::finish`] and its drop (a cancelled close), and
//! [`CloseState::mark_skipped`] (shutdown's skip path). Run with
//! `RUSTFLAGS="--cfg lifecycle_loom" cargo test -p lifecycle-runtime --release --lib loom`
//! (DESIGN.md, "Model checking").
//!
//! The claim is the shipped code; under `--cfg lifecycle_loom` its atomic and mutex are loom's
//! and its `Notify` is the small loom one of `util/sync.rs` (tokio's is not instrumented). The
//! closes themselves (the value's `close()` under a timeout, in a task of its own for shutdown)
//! are not modelled: the models finish a claim at once, or drop it to stand for a cancelled close.
//! The timeout that bounds shutdown's wait is not modelled either: the models show that the wait
//! ends without it.
//!
//! The invariants checked:
//! 1. Exactly one of {an early close through the handle, shutdown's close, the skip} finishes the
//!    close; a claim given back (a cancelled close) does not count, and lets another claim.
//! 2. Everyone else waits for that one or sees it finished: nobody waits forever (a missed wake
//!    leaves a thread parked, which loom reports as a deadlock).
//! 3. Whoever sees the resource closed reads the outcome the winner finished with.

use std::sync::Arc;

use loom::future::block_on;
use loom::sync::Mutex;
use loom::thread;

use super::managed::{Claimed, CloseState};
use crate::report::Outcome;
use crate::util::sync::model;

/// What one contender did: `Some(outcome)` it finished the close with, or saw it finished with.
#[derive(Debug, Default)]
struct Seen {
    finished: Vec<Outcome>,
    observed: Vec<Option<Outcome>>,
}

/// A close through the handle or by shutdown, as `Managed::close` and
/// `ResourceEntry::close_for_shutdown` run it: claim or wait, then finish with `outcome`, or read
/// how the winner finished.
fn close(state: &CloseState, outcome: Outcome, seen: &Mutex<Seen>) {
    match block_on(state.claim_or_wait()) {
        Claimed::Mine(claim) => {
            claim.finish((outcome.clone(), None));
            seen.lock().unwrap().finished.push(outcome);
        }
        Claimed::Closed => {
            let observed = state.outcome().map(|(outcome, _)| outcome);
            seen.lock().unwrap().observed.push(observed);
        }
    }
}

/// Checks invariants 1 and 3 once every contender is done.
fn check(state: &CloseState, seen: &Seen, skip_possible: bool) {
    assert!(state.is_closed());
    let last = state.outcome().map(|(outcome, _)| outcome);
    let skipped = skip_possible && last == Some(Outcome::Skipped);
    assert_eq!(
        seen.finished.len() + usize::from(skipped),
        1,
        "closes that finished: {seen:?}, skipped: {skipped}"
    );
    let winner = if skipped {
        Outcome::Skipped
    } else {
        seen.finished[0].clone()
    };
    assert_eq!(last.as_ref(), Some(&winner));
    for observed in &seen.observed {
        assert_eq!(
            observed.as_ref(),
            Some(&winner),
            "saw another outcome than the winner's"
        );
    }
}

/// An early close through the handle, shutdown's close and shutdown's skip, all at once.
#[test]
fn loom_early_close_shutdown_close_and_skip() {
    model(|| {
        let state = Arc::new(CloseState::new());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let early = {
            let (state, seen) = (Arc::clone(&state), Arc::clone(&seen));
            thread::spawn(move || close(&state, Outcome::Closed, &seen))
        };
        let shutdown = {
            let (state, seen) = (Arc::clone(&state), Arc::clone(&seen));
            thread::spawn(move || close(&state, Outcome::Error("by shutdown".into()), &seen))
        };
        state.mark_skipped();
        early.join().unwrap();
        shutdown.join().unwrap();
        check(&state, &seen.lock().unwrap(), true);
    });
}

/// An early close that is cancelled (its claim dropped: the resource is open again) while
/// shutdown closes: shutdown, waiting on it, must not wait forever, and closes the resource
/// itself.
#[test]
fn loom_cancelled_early_close_gives_the_resource_back() {
    model(|| {
        let state = Arc::new(CloseState::new());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let early = {
            let state = Arc::clone(&state);
            thread::spawn(move || {
                if let Claimed::Mine(claim) = block_on(state.claim_or_wait()) {
                    // Cancelled mid-close (a `select!`, a timeout): gives the resource back.
                    drop(claim);
                }
            })
        };
        close(&state, Outcome::Error("by shutdown".into()), &seen);
        early.join().unwrap();
        let seen = seen.lock().unwrap();
        check(&state, &seen, false);
        assert_eq!(seen.finished.len(), 1, "shutdown did not close it itself");
    });
}
