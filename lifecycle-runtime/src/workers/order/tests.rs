//! The stop order's stages, late declarations and families, without a runtime.

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn stages_follow_the_longest_chain_and_cycles_are_refused_whole() {
    let order = StopOrder::default();
    assert!(!order.is_used());
    order.declare("writer", &names(&["http"])).unwrap();
    order
        .declare("archiver", &names(&["writer", "http"]))
        .unwrap();
    order.declare("metrics", &names(&["nowhere"])).unwrap();
    let error = order.declare("http", &names(&["archiver"])).unwrap_err();
    assert_eq!(error.cycle(), ["http", "archiver", "http"]);
    let error = order.declare("http", &names(&["writer"])).unwrap_err();
    assert_eq!(error.cycle(), ["http", "writer", "http"]);
    order.declare("indexer", &names(&["archiver"])).unwrap();
    let error = order.declare("http", &names(&["indexer"])).unwrap_err();
    assert_eq!(error.cycle(), ["http", "indexer", "archiver", "http"]);
    let error = order.declare("self", &names(&["self"])).unwrap_err();
    assert_eq!(error.cycle(), ["self", "self"]);
    // The refused declarations left nothing behind.
    assert!(order.signal("self").is_none());

    let now = Instant::now();
    order.freeze(now);
    assert_eq!(order.staged("http"), Staged::No);
    assert_eq!(order.staged("writer"), Staged::Held(1));
    assert_eq!(order.staged("metrics"), Staged::Held(1));
    assert_eq!(order.staged("archiver"), Staged::Held(2));
    assert_eq!(order.staged("indexer"), Staged::Held(3));
    assert!(order.has_held());

    let writer = order.signal("writer").unwrap();
    let archiver = order.signal("archiver").unwrap();
    let mut told = order.start_through(1, now, Why::EarlierDone);
    told.sort();
    assert_eq!(told, ["metrics", "writer"]);
    assert!(writer.is_fired() && !archiver.is_fired());
    assert_eq!(order.staged("writer"), Staged::Started(1, now));
    assert!(order.start_through(1, now, Why::EarlierDone).is_empty());
    assert_eq!(order.start_through(2, now, Why::EarlierDone), ["archiver"]);
    assert!(archiver.is_fired() && order.has_held());
    assert_eq!(
        order.start_through(usize::MAX, now, Why::Budget),
        ["indexer"]
    );
    assert!(!order.has_held());

    let stages = order.stages(true);
    assert_eq!(stages.len(), 3);
    assert_eq!(stages[0].names, ["metrics", "writer"]);
    assert_eq!(stages[0].after, ["http", "nowhere"]);
    assert_eq!(stages[1].names, ["archiver"]);
}

#[test]
fn a_name_declared_after_the_stop_waits_for_its_stage_and_never_skips_a_held_one() {
    let order = StopOrder::default();
    order.declare("writer", &names(&["http"])).unwrap();
    let now = Instant::now();
    order.freeze(now);
    // Stage 1 is held: a late name in stage 1 waits with it.
    let late = order.declare("late", &names(&["http"])).unwrap();
    assert!(!late.is_fired());
    assert_eq!(order.staged("late"), Staged::Held(1));
    // A new stage after a held one is held too, not told before it.
    let later = order.declare("later", &names(&["writer"])).unwrap();
    assert!(!later.is_fired());
    assert_eq!(order.staged("later"), Staged::Held(2));
    order.start_through(1, now, Why::EarlierDone);
    assert!(late.is_fired() && !later.is_fired());
    order.start_through(usize::MAX, now, Why::EarlierDone);
    assert!(later.is_fired());
    // Every stage has started (step 3 may be over): a new one is told at once.
    let last = order.declare("last", &names(&["later"])).unwrap();
    assert!(last.is_fired());
    assert!(matches!(order.staged("last"), Staged::Started(3, _)));
    // Nothing to stop after is refused.
    let error = order.declare("lonely", &[]).unwrap_err();
    assert!(error.cycle().is_empty());
    assert!(
        error
            .to_string()
            .contains("`lonely` is declared to stop after nothing")
    );
}

#[test]
fn a_family_covers_the_workers_named_after_it() {
    let order = StopOrder::default();
    order.declare("items", &names(&["http"])).unwrap();
    order.declare_family("admin", &names(&["items"])).unwrap();
    // Declaring a family twice keeps one.
    order.declare_family("admin", &names(&["items"])).unwrap();
    order
        .declare_family("admin api", &names(&["admin"]))
        .unwrap();
    order.freeze(Instant::now());
    assert_eq!(order.staged("admin"), Staged::Held(2));
    assert_eq!(order.staged("admin connection"), Staged::Held(2));
    assert_eq!(order.staged("admin GET /lifecycle"), Staged::Held(2));
    // The longest family wins; a name only starting like a family is not in it.
    assert_eq!(order.staged("admin api GET /x"), Staged::Held(3));
    assert_eq!(order.staged("administrator"), Staged::No);
    assert_eq!(order.staged("http connection"), Staged::No);
    // `items` is no family: a worker named `items flusher` is in stage 0.
    assert_eq!(order.staged("items flusher"), Staged::No);
    assert_eq!(order.inner().families, names(&["admin", "admin api"]));
    // A handler of the family that waits for its own signal gets the family's.
    let family = order.signal("admin").unwrap();
    assert!(order.signal("admin GET /events").unwrap().same_as(&family));
    assert!(order.signal("administrator").is_none());
}
