//! The registry's own tests: linking from any thread, settling, folding.

use std::sync::Arc;

use super::*;
use crate::workers::WorkerKind;

fn node(name: &'static str, stop_timeout: u64) -> Pin<Box<Node>> {
    Box::pin(Node::new(
        name.into(),
        WorkerKind::Thread,
        Duration::from_secs(stop_timeout),
        0,
    ))
}

fn link(registry: &Registry, node: &Pin<Box<Node>>) {
    // SAFETY: pinned in a box the test unlinks before dropping.
    registry.task_spawned();
    unsafe { registry.link(node.as_ref(), None) };
}

fn unlink(registry: &Registry, node: &Pin<Box<Node>>) -> bool {
    // SAFETY: linked in `registry` by this test.
    unsafe { registry.unlink(node, |_, _| {}) }.shard_settled
}

fn names(registry: &Registry) -> Vec<String> {
    let mut names = Vec::new();
    registry.for_each(None, |entry| names.push(entry.name().to_string()));
    names.sort();
    names
}

#[test]
fn nodes_link_and_unlink_from_any_thread_in_any_order() {
    let registry = Arc::new(Registry::new());
    let (a, b, c) = (node("a", 1), node("b", 1), node("c", 1));
    link(&registry, &a);
    link(&registry, &b);
    let remote = registry.clone();
    let c = std::thread::spawn(move || {
        link(&remote, &c);
        c
    })
    .join()
    .unwrap();
    assert_eq!(names(&registry), ["a", "b", "c"]);
    assert!(!registry.settled(0));
    // The middle of a list, then its head, then another shard's only node.
    assert!(!unlink(&registry, &a));
    assert_eq!(names(&registry), ["b", "c"]);
    assert!(unlink(&registry, &b), "this shard is empty now");
    assert!(!registry.settled(0), "c is still linked elsewhere");
    unlink(&registry, &c);
    assert!(registry.settled(0));
    assert!(names(&registry).is_empty());
}

#[test]
fn loops_waiting_on_their_timer_have_their_own_list() {
    let registry = Registry::new();
    let plain = node("plain", 1);
    // A loop's node holds the key of its state in the loop table (here the first, key 0), and
    // whether it waits on its timer alone (an interval loop) or watches its `Shutdown` (a
    // service): only the first must be woken when workers are told to stop.
    let looping = Box::pin(Node::new(
        "loop".into(),
        WorkerKind::Task,
        Duration::from_secs(1),
        1 | crate::workers::node::WOKEN_AT_STOP,
    ));
    let service = Box::pin(Node::new(
        "service".into(),
        WorkerKind::Task,
        Duration::from_secs(1),
        2,
    ));
    link(&registry, &plain);
    link(&registry, &looping);
    link(&registry, &service);
    let mut loops = Vec::new();
    registry.for_each_loop(|entry| loops.push(entry.name().to_string()));
    assert_eq!(loops, ["loop"]);
    assert_eq!(names(&registry), ["loop", "plain", "service"]);
    assert_eq!(looping.loop_key(), Some(0));
    assert_eq!(service.loop_key(), Some(1));
    assert!(looping.is_loop() && service.is_loop() && !plain.is_loop());
    unlink(&registry, &service);
    unlink(&registry, &looping);
    unlink(&registry, &plain);
}

#[test]
fn unpolled_tasks_keep_the_registry_unsettled() {
    let registry = Arc::new(Registry::new());
    registry.task_spawned();
    assert!(!registry.settled(0));
    assert!(registry.settled(1), "unless they are given up on");
    assert_eq!(registry.unpolled(), 1);
    // The first poll ends on another thread: the sums still add up.
    let remote = registry.clone();
    std::thread::spawn(move || remote.ended_in_first_poll(false))
        .join()
        .unwrap();
    assert!(registry.settled(0));
    let totals = registry.totals();
    assert_eq!((totals.spawned, totals.completed), (1, 1));
}

#[test]
fn given_up_entries_count_as_settled_until_they_leave() {
    let registry = Registry::new();
    let stuck = node("stuck", 1);
    link(&registry, &stuck);
    assert!(!registry.settled(0));
    registry.judge(None, |_| Some((Verdict::Leaked, false)));
    assert!(registry.settled(0));
    assert_eq!(stuck.verdict(), Verdict::Leaked);
    assert!(unlink(&registry, &stuck));
    assert!(registry.settled(0));
}

#[test]
fn the_least_stop_timeout_bounds_the_first_wait() {
    let registry = Registry::new();
    assert_eq!(registry.min_stop_timeout(), None);
    let (slow, quick) = (node("slow", 9), node("quick", 2));
    link(&registry, &slow);
    link(&registry, &quick);
    assert_eq!(registry.min_stop_timeout(), Some(Duration::from_secs(2)));
    unlink(&registry, &quick);
    unlink(&registry, &slow);
}

#[test]
fn stopped_workers_fold_by_name_and_kind() {
    let registry = Registry::new();
    let now = Instant::now();
    let nodes: Vec<_> = ["conn", "conn", "flush", "conn"]
        .into_iter()
        .map(|name| node(name, 1))
        .collect();
    for node in &nodes {
        link(&registry, node);
    }
    for (n, node) in nodes.iter().enumerate() {
        let at = now + Duration::from_millis(n as u64);
        // SAFETY: linked above.
        unsafe { registry.unlink(node, |_, fold| fold(FoldedEnd::Stopped, at)) };
    }
    let mut rows = registry.take_folded();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(rows.len(), 2);
    assert_eq!((&*rows[0].name, rows[0].count), ("conn", 3));
    assert_eq!(rows[0].last_end, now + Duration::from_millis(3));
    assert_eq!((&*rows[1].name, rows[1].count), ("flush", 1));
    assert!(registry.take_folded().is_empty(), "taken once");
}

#[test]
fn head_middle_and_tail_unlink_and_the_list_keeps_its_order() {
    let registry = Registry::new();
    let nodes: Vec<_> = ["x", "y", "z", "w"]
        .into_iter()
        .map(|n| node(n, 1))
        .collect();
    let in_order = |registry: &Registry| {
        let mut names = Vec::new();
        registry.for_each(None, |entry| names.push(entry.name().to_string()));
        names
    };
    link(&registry, &nodes[0]);
    link(&registry, &nodes[1]);
    link(&registry, &nodes[2]);
    assert_eq!(in_order(&registry), ["x", "y", "z"], "oldest first");
    unlink(&registry, &nodes[2]);
    link(&registry, &nodes[3]);
    assert_eq!(
        in_order(&registry),
        ["x", "y", "w"],
        "the tail moved back, then on"
    );
    unlink(&registry, &nodes[0]);
    assert_eq!(in_order(&registry), ["y", "w"]);
    unlink(&registry, &nodes[3]);
    unlink(&registry, &nodes[1]);
    assert!(in_order(&registry).is_empty());
    link(&registry, &nodes[2]);
    assert_eq!(
        in_order(&registry),
        ["z"],
        "an emptied list takes nodes again"
    );
    unlink(&registry, &nodes[2]);
}
