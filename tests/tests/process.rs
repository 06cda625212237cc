//! `ManagedChild`: real child processes in their own process group; SIGTERM, then SIGKILL; no
//! orphans.

mod common;

use std::time::{Duration, Instant};

use common::{Watchdog, coordinator, entry};
use lifecycle_runtime::{EntryKind, ManagedChild, Outcome};
use tokio::process::Command;

const HANG: Duration = Duration::from_secs(60);

/// The default time a child gets after SIGTERM before SIGKILL.
const TERM_TIMEOUT: Duration = Duration::from_secs(3);

/// What a loaded machine may add to a promised bound, measured from outside.
const MARGIN: Duration = Duration::from_millis(500);

/// Runs `shutdown` and measures it from outside.
async fn timed_shutdown(
    coordinator: &lifecycle_runtime::Coordinator,
) -> (lifecycle_runtime::ShutdownReport, Duration) {
    let started = Instant::now();
    let report = coordinator.shutdown().await;
    let took = started.elapsed();
    assert!(report.elapsed() <= took, "{report}");
    (report, took)
}

fn sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    command
}

/// Whether any process of group `pgid` is running (zombies waiting for init do not count).
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|process| {
            let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z"
        })
}

/// Waits until the script has written its ready marker (so its traps are installed).
async fn wait_ready(marker: &std::path::Path) {
    for _ in 0..500 {
        if marker.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the child never became ready");
}

fn marker(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("lifecycle-{test}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_honours_sigterm_stops_cleanly_with_its_children() {
    let _watchdog = Watchdog::new("child_honours_sigterm", HANG);
    let coordinator = coordinator();
    let ready = marker("honours");
    let script = format!("sleep 100 & sleep 100 & touch {}; wait", ready.display());
    let child = coordinator
        .scope(async { ManagedChild::spawn("sleepers", sh(&script)) })
        .await
        .unwrap();
    let pgid = child.id().unwrap();
    wait_ready(&ready).await;
    assert!(group_alive(pgid));
    let (report, took) = timed_shutdown(&coordinator).await;
    let closed = entry(&report, "sleepers");
    assert_eq!(
        (closed.kind(), closed.outcome()),
        (EntryKind::Process, &Outcome::Closed),
        "{report}"
    );
    assert!(!group_alive(pgid), "no process of the group is left");
    // It stopped on SIGTERM: nothing waited out the 3s term timeout.
    assert!(took < Duration::from_secs(1), "took {took:?}: {report}");
    let _ = std::fs::remove_file(ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_ignores_sigterm_is_killed_after_its_timeout_and_reported() {
    let _watchdog = Watchdog::new("child_ignores_sigterm", HANG);
    let coordinator = coordinator();
    let ready = marker("ignores");
    // Ignored signals stay ignored across exec: the grandchildren ignore SIGTERM too.
    let script = format!(
        "trap '' TERM; sleep 100 & sleep 100 & touch {}; wait",
        ready.display()
    );
    let child = coordinator
        .scope(async {
            ManagedChild::builder("stubborn", sh(&script))
                .term_timeout(Duration::from_millis(300))
                .spawn()
        })
        .await
        .unwrap();
    let pgid = child.id().unwrap();
    wait_ready(&ready).await;
    let (report, took) = timed_shutdown(&coordinator).await;
    lifecycle_tests::record_fault_time(took);
    let killed = entry(&report, "stubborn");
    let Outcome::Error(message) = killed.outcome() else {
        panic!("{report}")
    };
    assert!(
        message.contains("child process `stubborn` did not exit within 300ms of SIGTERM; killed its process group with SIGKILL"),
        "{report}"
    );
    assert!(
        killed.elapsed() >= Duration::from_millis(300),
        "it was given its term timeout: {report}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(300) + MARGIN,
        "SIGKILL came {took:?} after shutdown began, its term timeout is 300ms: {report}"
    );
    assert!(!group_alive(pgid), "SIGKILL reached the whole group");
    let _ = std::fs::remove_file(ready);
}

/// Whether process `pid` is running (not gone, not a zombie).
fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descendant_that_left_the_process_group_is_killed_and_named() {
    let _watchdog = Watchdog::new("descendant_left_group", HANG);
    let coordinator = coordinator();
    let ready = marker("escapes");
    // `setsid` puts the sleeper in a session and group of its own: SIGTERM to the child's group
    // does not reach it.
    let script = format!(
        "setsid sleep 100 & echo $! > {ready}.pid; touch {ready}; wait",
        ready = ready.display()
    );
    let child = coordinator
        .scope(async { ManagedChild::spawn("daemonizer", sh(&script)) })
        .await
        .unwrap();
    wait_ready(&ready).await;
    let pid_file = format!("{}.pid", ready.display());
    let escaped: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_running(escaped));
    // `$!` is known before the background process has run `setsid` and exec'd `sleep`: wait
    // until it is `sleep` in a group of its own.
    let (name, group) = {
        let mut seen = (String::new(), String::new());
        for _ in 0..500 {
            let stat = std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap();
            let (head, rest) = stat.rsplit_once(") ").unwrap();
            let name = head.split_once(" (").unwrap().1.to_owned();
            let group = rest.split_whitespace().nth(2).unwrap().to_owned();
            seen = (name, group);
            if seen.0 == "sleep" && seen.1 == escaped.to_string() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    };
    assert_eq!(name, "sleep");
    assert_ne!(
        group,
        child.id().unwrap().to_string(),
        "the sleeper left the child's process group"
    );
    let (report, took) = timed_shutdown(&coordinator).await;
    lifecycle_tests::record_fault_time(took);
    let closed = entry(&report, "daemonizer");
    let Outcome::Error(message) = closed.outcome() else {
        panic!("{report}")
    };
    assert!(
        message.contains(&format!(
            "1 descendant(s) of `daemonizer` had left its process group and were still running: pid {escaped} `sleep`; killed with SIGKILL"
        )),
        "{report}"
    );
    assert!(
        !process_running(escaped),
        "the escaped sleeper is gone: {:?} ({took:?})",
        std::fs::read_to_string(format!("/proc/{escaped}/stat"))
    );
    // The group honoured SIGTERM; the escaped sleeper was killed without waiting for it.
    assert!(took < Duration::from_secs(1), "took {took:?}: {report}");
    let _ = std::fs::remove_file(ready);
    let _ = std::fs::remove_file(pid_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_subreaper_an_orphaned_descendant_comes_to_us_and_is_reaped() {
    let _watchdog = Watchdog::new("subreaper", HANG);
    let coordinator = coordinator();
    let ready = marker("orphans");
    // The inner shell exits at once: its `setsid` sleeper is orphaned.
    let script = format!(
        "sh -c 'setsid sleep 100 & echo $! > {ready}.pid'; touch {ready}; exec sleep 100",
        ready = ready.display()
    );
    coordinator
        .scope(async {
            ManagedChild::builder("orphan-maker", sh(&script))
                .subreaper(true)
                .spawn()
        })
        .await
        .unwrap();
    wait_ready(&ready).await;
    let pid_file = format!("{}.pid", ready.display());
    let orphan: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // `$!` is known before the background process has exec'd `setsid` and then `sleep`: the
    // report names it by what it is when killed, so wait until it is `sleep`.
    for _ in 0..500 {
        let comm = std::fs::read_to_string(format!("/proc/{orphan}/comm")).unwrap();
        if comm.trim() == "sleep" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let parent = std::fs::read_to_string(format!("/proc/{orphan}/stat"))
        .unwrap()
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(parent, std::process::id().to_string(), "re-parented to us");
    let (report, took) = timed_shutdown(&coordinator).await;
    lifecycle_tests::record_fault_time(took);
    let Outcome::Error(message) = entry(&report, "orphan-maker").outcome() else {
        panic!("{report}")
    };
    assert!(
        message.contains(&format!("pid {orphan} `sleep`")),
        "{report}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{orphan}")).exists(),
        "killed and reaped, not left a zombie"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}: {report}");
    let _ = std::fs::remove_file(ready);
    let _ = std::fs::remove_file(pid_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_already_exited_closes_at_once() {
    let _watchdog = Watchdog::new("child_already_exited", HANG);
    let coordinator = coordinator();
    let child = coordinator
        .scope(async { ManagedChild::spawn("one-shot", sh("exit 0")) })
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    let (report, took) = timed_shutdown(&coordinator).await;
    assert_eq!(
        entry(&report, "one-shot").outcome(),
        &Outcome::Closed,
        "{report}"
    );
    assert!(report.is_clean(), "{report}");
    assert!(took < MARGIN, "took {took:?}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_early_stops_the_child_and_shutdown_skips_it() {
    let _watchdog = Watchdog::new("child_closed_early", HANG);
    let coordinator = coordinator();
    let child = coordinator
        .scope(async { ManagedChild::spawn("early", sh("exec sleep 100")) })
        .await
        .unwrap();
    let pgid = child.id().unwrap();
    let started = Instant::now();
    child.close().await.unwrap();
    let took = started.elapsed();
    assert!(!group_alive(pgid));
    assert!(
        took < TERM_TIMEOUT,
        "`sleep` dies of SIGTERM: no SIGKILL after the term timeout was needed ({took:?})"
    );
    assert!(child.has_exited().await);
    let report = coordinator.shutdown().await;
    assert!(report.entry("early").is_none(), "{report}");
}

#[test]
fn a_child_nobody_can_close_any_more_is_killed_when_dropped() {
    let _watchdog = Watchdog::new("child_dropped", HANG);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pgid = runtime.block_on(async {
        let coordinator = coordinator();
        let child = coordinator
            .scope(async { ManagedChild::spawn("forgotten", sh("exec sleep 100")) })
            .await
            .unwrap();
        child.id().unwrap()
        // The coordinator (which held the child) and the handle are dropped here.
    });
    let mut gone = false;
    for _ in 0..200 {
        // The killed process is a zombie until the runtime reaps it; a zombie still answers
        // signal 0, so look at its state instead.
        let state = std::fs::read_to_string(format!("/proc/{pgid}/stat")).unwrap_or_default();
        if state.is_empty() || state.split_whitespace().nth(2) == Some("Z") {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(gone, "the dropped child was killed");
}

#[tokio::test]
async fn a_child_that_cannot_start_is_an_error_naming_it() {
    let coordinator = coordinator();
    let error = coordinator
        .scope(async { ManagedChild::spawn("ghost", Command::new("/nonexistent/lifecycle-ghost")) })
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot start child process `ghost`:"),
        "{error}"
    );
}
