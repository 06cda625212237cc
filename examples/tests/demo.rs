//! The demo service as a real process: it runs, stops cleanly on one signal, and exits at once
//! with 130 on a second one.

use std::process::Command;
use std::time::{Duration, Instant};

use lifecycle_tests::Program;

mod common;

/// The demo, on an SQLite file of this test's own and free ports.
fn demo_for(test: &str) -> Command {
    common::demo_command(test).0
}

#[test]
fn the_demo_runs_and_stops_cleanly_by_itself() {
    let (code, stderr) = Program::start(demo_for("runs"), &[("DEMO_RUN_FOR", "1500ms")]).finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("shutdown: main returned · clean"),
        "{stderr}"
    );
    for part in [
        "task heartbeat",
        "task flusher",
        "task http",
        "thread load-sampler",
        "task batch-writer items",
        "task admin",
    ] {
        assert!(
            stderr.contains(&format!("stopped   {part}")),
            "{part} missing:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("final flush"),
        "the flusher's final tick ran:\n{stderr}"
    );
    assert!(stderr.contains("closed    process sidecar"), "{stderr}");
    assert!(stderr.contains("closed    resource store"), "{stderr}");
    // Every request the writer accepted was written: its own entry says so by closing cleanly.
    assert!(
        stderr.contains("closed    resource batch-writer items"),
        "{stderr}"
    );
    assert!(
        stderr.contains("closed    resource database lifecycle-demo"),
        "{stderr}"
    );
}

#[test]
fn one_sigterm_stops_the_demo_cleanly() {
    let mut demo = Program::start(demo_for("sigterm"), &[]);
    demo.wait_for("demo service running");
    demo.signal(libc::SIGTERM);
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("shutdown: SIGTERM received · clean"),
        "{stderr}"
    );
}

#[test]
fn a_second_sigterm_exits_at_once_with_130() {
    // A long drain keeps the first shutdown busy, as a slow load balancer would.
    let mut demo = Program::start(
        demo_for("second-sigterm"),
        &[
            ("LIFECYCLE_DRAIN", "30s"),
            ("LIFECYCLE_SHUTDOWN_TIMEOUT", "60s"),
        ],
    );
    demo.wait_for("demo service running");
    // The heartbeat has ticked (it is spawned before that line, but under load may not have run
    // yet): it is then a registered loop, which the report must name.
    demo.wait_for("alive");
    demo.signal(libc::SIGTERM);
    demo.wait_for("shutdown started");
    let second = Instant::now();
    demo.signal(libc::SIGTERM);
    let (code, exited, stderr) = demo.finish_timed();
    let took = exited.duration_since(second);
    lifecycle_tests::record_fault_time(took);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} to exit after the second signal"
    );
    assert!(
        stderr.contains("SIGTERM during shutdown: exiting now with code 130."),
        "{stderr}"
    );
    for pending in ["task heartbeat", "thread load-sampler"] {
        assert!(
            stderr.contains(&format!(
                "TIMED OUT {pending} — did not finish: still running when the process exited"
            )),
            "{pending}: {stderr}"
        );
    }
    // Exiting at once still takes the sidecar down: its output pipe closed with it, so reading
    // stderr to the end did not wait (and the pid is gone).
    let pid: u32 = stderr
        .lines()
        .find(|line| line.contains("sidecar started"))
        .and_then(|line| line.split("pid=").nth(1))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sidecar pid in:\n{stderr}"));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.split_whitespace().nth(2) == Some("Z"),
        "the sidecar outlived the demo: {state}"
    );
}

#[test]
fn a_bad_database_url_stops_the_demo_at_start_naming_the_variable() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_service"));
    command.env("DATABASE_URL", "mysql://localhost/shop");
    let started = Instant::now();
    let (code, exited, stderr) = Program::start(command, &[]).finish_timed();
    lifecycle_tests::record_fault_time(exited - started);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("DATABASE_URL="), "{stderr}");
    assert!(
        stderr.contains("is not a database URL: write postgres://"),
        "{stderr}"
    );
    assert!(!stderr.contains("demo service running"), "{stderr}");
}

#[test]
fn a_bad_listen_addr_stops_the_demo_at_start_with_2_naming_the_variable() {
    let (code, stderr) =
        Program::start(demo_for("listen"), &[("LISTEN_ADDR", "localhost")]).finish();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("LISTEN_ADDR=\"localhost\" is not an address to listen on"),
        "{stderr}"
    );
    assert!(
        stderr.contains("write it like \"127.0.0.1:8080\""),
        "{stderr}"
    );
    assert!(!stderr.contains("demo service running"), "{stderr}");
}

#[test]
fn a_bad_admin_addr_stops_the_demo_at_start_with_2_naming_the_variable() {
    let (code, stderr) = Program::start(demo_for("admin-addr"), &[("ADMIN_ADDR", "9090")]).finish();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("ADMIN_ADDR=\"9090\" is not an address to listen on"),
        "{stderr}"
    );
    assert!(
        stderr.contains("write it like \"127.0.0.1:9090\" or \"0.0.0.0:9090\", or \"off\""),
        "{stderr}"
    );
    assert!(!stderr.contains("demo service running"), "{stderr}");
}

/// The operator's server answers the health routes and the status page, not the API, and stops
/// last: its report entries come in the stage after the writer's.
#[test]
fn the_admin_server_serves_the_operators_routes_and_stops_after_the_writer() {
    let mut demo = Program::start(demo_for("admin"), &[]);
    let admin = demo.logged_address("admin routes served");
    demo.wait_for("demo service running");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client");
    runtime.block_on(async {
        let checks = async {
            let mut client = lifecycle_tests::http::Connection::open(admin)
                .await
                .expect("connect to the admin server");
            assert_eq!(client.get("/readyz").await.expect("readyz").status, 200);
            let page = client.get("/lifecycle").await.expect("the status page");
            assert_eq!(page.status, 200, "{page:?}");
            // The API is not served here.
            let count = client.get("/items/count").await.expect("items/count");
            assert_eq!(count.status, 404, "{count:?}");
        };
        tokio::time::timeout(lifecycle_tests::LIMIT, checks)
            .await
            .expect("the checks finish within the limit");
    });
    demo.signal(libc::SIGTERM);
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped   task admin"), "{stderr}");
    let stage = stderr
        .lines()
        .find(|line| line.contains("stage 2"))
        .unwrap_or_else(|| panic!("no stage 2 in:\n{stderr}"));
    assert!(stage.contains("admin"), "{stage}");
    assert!(stage.contains("batch-writer items"), "{stage}");
}
