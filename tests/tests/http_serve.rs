//! Feature `http`: the health routes, and how a server runs under the coordinator through the
//! drain and the stop, seen by a real HTTP client over TCP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lifecycle_runtime::http::axum::Router;
use lifecycle_runtime::http::axum::routing::{get, post};
use lifecycle_runtime::{Coordinator, Outcome, ShutdownReport};
use lifecycle_tests::http::Connection;
use tokio::sync::Notify;

/// Far above what any of these takes: a hang fails the test instead of freezing CI.
const LIMIT: Duration = Duration::from_secs(20);

/// A coordinator of the test's own, which does not count the other tests' threads as its own.
fn coordinator() -> Coordinator {
    Coordinator::builder().scan_os_threads(false).build()
}

/// Runs `body` in `coordinator`'s scope under [`LIMIT`].
async fn within<F: Future>(coordinator: &Coordinator, body: F) -> F::Output {
    tokio::time::timeout(LIMIT, coordinator.scope(body))
        .await
        .expect("the test went past its limit")
}

/// Serves `router` plus the health routes on a free port of 127.0.0.1, on the current
/// coordinator, with `stop_timeout` for requests.
async fn start(router: Router, stop_timeout: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let address = listener.local_addr().expect("bound address");
    let router = router.merge(lifecycle_runtime::http::health_routes());
    lifecycle_runtime::http::serve(listener, router)
        .stop_timeout(stop_timeout)
        .spawn();
    address
}

fn outcome_of<'a>(report: &'a ShutdownReport, name: &str) -> &'a Outcome {
    report
        .entry(name)
        .unwrap_or_else(|| panic!("no entry {name:?} in:\n{report}"))
        .outcome()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_with_the_phase_until_ready_and_livez_answers_200() {
    let coordinator = coordinator();
    within(&coordinator, async {
        let address = start(Router::new(), Duration::from_secs(1)).await;
        let mut client = Connection::open(address).await.unwrap();

        let starting = client.get("/readyz").await.unwrap();
        assert_eq!(starting.status, 503, "{starting:?}");
        assert_eq!(starting.body, r#"{"ready":false,"phase":"starting"}"#);
        let live = client.get("/livez").await.unwrap();
        assert_eq!(live.status, 200, "{live:?}");

        lifecycle_runtime::mark_ready();
        let ready = client.get("/readyz").await.unwrap();
        assert_eq!(ready.status, 200, "{ready:?}");
        assert_eq!(ready.body, r#"{"ready":true,"phase":"ready"}"#);
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tasks_is_the_snapshot_as_json() {
    let coordinator = coordinator();
    within(&coordinator, async {
        let address = start(Router::new(), Duration::from_secs(1)).await;
        let _worker = lifecycle_runtime::spawn("queue-consumer", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        lifecycle_runtime::TaskGroup::new("db").max_concurrent(3);
        lifecycle_runtime::mark_ready();
        let mut client = Connection::open(address).await.unwrap();
        let answer = client.get("/health/tasks").await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
        assert_eq!(json["readiness"], "ready", "{json:#}");
        assert_eq!(json["ready"], true, "{json:#}");
        let tasks = json["tasks"].as_array().expect("tasks");
        let consumer = tasks
            .iter()
            .find(|task| task["name"] == "queue-consumer")
            .unwrap_or_else(|| panic!("no queue-consumer in {json:#}"));
        assert_eq!(consumer["state"], "running");
        assert!(consumer["ticks"].is_u64());
        // The server and the connection are tasks too, named for what they are (the request
        // being answered is in its first poll: counted in `starting`, not listed).
        assert!(json["starting"].as_u64().unwrap() >= 1, "{json:#}");
        for name in ["http", "http connection"] {
            assert!(
                tasks.iter().any(|task| task["name"] == name),
                "no {name} in {json:#}"
            );
        }
        assert!(
            json["counters"]["spawned"].as_u64().unwrap() >= 4,
            "{json:#}"
        );
        assert_eq!(json["counters"]["failed"], 0);
        assert_eq!(json["groups"][0]["name"], "db", "{json:#}");
        assert_eq!(json["groups"][0]["max_concurrent"], 3, "{json:#}");
        for key in ["threads", "resources", "pools"] {
            assert!(json[key].is_array(), "{key} in {json:#}");
        }
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_through_the_drain_then_closes_idle_connections() {
    let drain = Duration::from_millis(600);
    let coordinator = Coordinator::builder()
        .drain(drain)
        .scan_os_threads(false)
        .build();
    within(&coordinator, async {
        let router = Router::new().route("/hello", get(|| async { "hello" }));
        let address = start(router, Duration::from_secs(1)).await;
        lifecycle_runtime::mark_ready();
        let mut kept = Connection::open(address).await.unwrap();
        let before = kept.get("/hello").await.unwrap();
        assert_eq!(before.status, 200);
        assert!(!before.closes, "keep-alive before shutdown: {before:?}");

        let report = tokio::spawn(lifecycle_runtime::shutdown());
        // Draining: not ready, still alive, still serving new connections; every answer asks
        // its client to close the connection (to reconnect elsewhere).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let once = async |path: &str| {
            let mut connection = Connection::open(address).await.unwrap();
            let answer = connection.get(path).await.unwrap();
            assert!(
                answer.closes,
                "connection: close while draining: {answer:?}"
            );
            assert!(connection.closed_within(Duration::from_secs(1)).await);
            answer
        };
        let not_ready = once("/readyz").await;
        assert_eq!(not_ready.status, 503);
        assert_eq!(not_ready.body, r#"{"ready":false,"phase":"draining"}"#);
        let live = once("/livez").await;
        assert_eq!(live.status, 200, "{live:?}");
        assert_eq!(once("/hello").await.body, "hello");
        // Idle connections stay open through the drain.
        let fresh = Connection::open(address).await.unwrap();
        assert!(!kept.is_closed() && !fresh.is_closed());

        // At the stop, idle keep-alive connections are closed at once, and nothing new is
        // accepted.
        let started = tokio::time::Instant::now();
        assert!(kept.closed_within(drain + Duration::from_secs(2)).await);
        assert!(fresh.closed_within(Duration::from_secs(1)).await);
        assert!(
            started.elapsed() >= drain - Duration::from_millis(100),
            "closed before the drain ended: {:?}",
            started.elapsed()
        );
        let report = report.await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(outcome_of(&report, "http"), &Outcome::Stopped);
        assert!(
            Connection::open(address).await.is_err(),
            "the listener is closed after the stop"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_the_stop_finishes_and_then_its_connection_closes() {
    let coordinator = coordinator();
    within(&coordinator, async {
        let started = Arc::new(Notify::new());
        let handler_started = started.clone();
        let router = Router::new().route(
            "/items",
            post(move || {
                let started = handler_started.clone();
                async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "stored"
                }
            }),
        );
        let address = start(router, Duration::from_secs(5)).await;
        let mut client = Connection::open(address).await.unwrap();
        let request = tokio::spawn(async move {
            let answer = client.send("POST", "/items", Some("{}".into())).await;
            (answer, client)
        });
        started.notified().await;
        let report = tokio::spawn(lifecycle_runtime::shutdown());
        let (answer, client) = request.await.unwrap();
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body, "stored");
        assert!(client.closed_within(Duration::from_secs(2)).await);
        let report = report.await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(outcome_of(&report, "http POST /items"), &Outcome::Stopped);
        assert_eq!(outcome_of(&report, "http connection"), &Outcome::Stopped);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_handler_is_aborted_at_the_stop_timeout_and_named() {
    let stop_timeout = Duration::from_millis(300);
    let coordinator = coordinator();
    within(&coordinator, async {
        let started = Arc::new(Notify::new());
        let handler_started = started.clone();
        let router = Router::new().route(
            "/stuck",
            get(move || {
                let started = handler_started.clone();
                async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "never"
                }
            }),
        );
        let address = start(router, stop_timeout).await;
        let mut client = Connection::open(address).await.unwrap();
        let request = tokio::spawn(async move { client.get("/stuck").await });
        started.notified().await;
        let began = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        let took = began.elapsed();
        assert!(
            took >= stop_timeout && took < Duration::from_secs(5),
            "took {took:?}"
        );
        assert!(!report.is_clean(), "{report}");
        assert_eq!(outcome_of(&report, "http GET /stuck"), &Outcome::Aborted);
        // Only the stuck request is blamed: its connection and the server end by themselves
        // once it is cut off.
        assert_eq!(outcome_of(&report, "http connection"), &Outcome::Stopped);
        assert_eq!(outcome_of(&report, "http"), &Outcome::Stopped);
        assert!(
            report.to_string().contains("task http GET /stuck"),
            "{report}"
        );
        // The client is told, rather than left waiting.
        let answer = request.await.unwrap().unwrap();
        assert_eq!(answer.status, 503, "{answer:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    let coordinator = coordinator();
    within(&coordinator, async {
        let router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("handler exploded");
                    }
                    "unreachable"
                }),
            )
            .route("/hello", get(|| async { "hello" }));
        let address = start(router, Duration::from_secs(1)).await;
        let mut client = Connection::open(address).await.unwrap();
        let answer = client.get("/boom").await.unwrap();
        assert_eq!(answer.status, 500, "{answer:?}");
        // The client learns that it panicked, not what the panic said (it may hold secrets).
        assert!(answer.body.contains("panicked"), "{answer:?}");
        assert!(!answer.body.contains("handler exploded"), "{answer:?}");
        let mut again = Connection::open(address).await.unwrap();
        assert_eq!(again.get("/hello").await.unwrap().status, 200);
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(lifecycle_runtime::snapshot().counters.panicked, 1);
    })
    .await;
}

/// What happened when, in the order it happened.
type Events = Arc<std::sync::Mutex<Vec<&'static str>>>;

fn event(events: &Events, what: &'static str) {
    events.lock().unwrap().push(what);
}

fn position(events: &[&'static str], what: &str) -> usize {
    events
        .iter()
        .position(|seen| *seen == what)
        .unwrap_or_else(|| panic!("no {what:?} in {events:?}"))
}

/// A route that records `what` once it has slept `sleep`.
fn slow_route(events: &Events, sleep: Duration, what: &'static str) -> Router {
    let events = events.clone();
    Router::new().route(
        "/slow",
        get(move || {
            let events = events.clone();
            async move {
                tokio::time::sleep(sleep).await;
                event(&events, what);
                "done"
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_declared_to_stop_after_the_writer_answers_through_the_whole_stop() {
    let coordinator = coordinator();
    within(&coordinator, async {
        let events: Events = Arc::default();
        // The API: stops first (stage 0); a request of 300 ms is in flight at the stop.
        let api = start(
            slow_route(&events, Duration::from_millis(300), "api request done"),
            Duration::from_secs(5),
        )
        .await;
        // What the API feeds: stops after it (stage 1), and takes 300 ms to flush.
        let writer = lifecycle_runtime::spawn_after("writer", ["http"], {
            let events = events.clone();
            async move {
                lifecycle_runtime::shutdown_signal().triggered().await;
                event(&events, "writer told");
                tokio::time::sleep(Duration::from_millis(300)).await;
                event(&events, "writer done");
            }
        })
        .unwrap();
        // The operator's server: stops after the writer (stage 2). A slow request of its own
        // (1.5 s) is in flight at the stop, and must not hold the earlier stages.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let admin_routes = slow_route(&events, Duration::from_millis(1500), "admin request done")
            .merge(lifecycle_runtime::http::health_routes());
        lifecycle_runtime::http::serve(listener, admin_routes)
            .name("admin")
            .stop_after(["writer"])
            .spawn();
        lifecycle_runtime::mark_ready();

        let mut api_client = Connection::open(api).await.unwrap();
        let api_request = tokio::spawn(async move { api_client.get("/slow").await });
        let mut admin_client = Connection::open(admin).await.unwrap();
        let admin_request = tokio::spawn(async move { admin_client.get("/slow").await });
        // Both requests are running (each is listed once polled).
        let mut probe = Connection::open(admin).await.unwrap();
        loop {
            let answer = probe.get("/health/tasks").await.unwrap();
            if answer.body.contains("http GET /slow") && answer.body.contains("admin GET /slow") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let called = std::time::Instant::now();
        let report = tokio::spawn(lifecycle_runtime::shutdown());

        // Through the stop, the operator's server answers while the API is gone.
        let mut seen_writer_stopping = false;
        let mut api_refused_meanwhile = false;
        let mut answers = 0;
        loop {
            let Ok(mut client) = Connection::open(admin).await else {
                break;
            };
            let Ok(answer) = client.get("/health/tasks").await else {
                break;
            };
            answers += 1;
            let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
            let names: Vec<&str> = json["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|task| task["name"].as_str().unwrap())
                .collect();
            if json["readiness"] == "stopping"
                && names.contains(&"writer")
                && !names.contains(&"http")
                && events.lock().unwrap().contains(&"writer told")
            {
                seen_writer_stopping = true;
                api_refused_meanwhile |= tokio::net::TcpStream::connect(api).await.is_err();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = report.await.unwrap();
        lifecycle_tests::record_fault_time(called.elapsed());
        assert!(report.is_clean(), "{report}");
        assert!(
            seen_writer_stopping,
            "the admin server answered {answers} times, never while the writer was stopping:\n{report}"
        );
        assert!(api_refused_meanwhile, "the API still accepted during stage 1");
        let events = events.lock().unwrap().clone();
        assert!(
            position(&events, "api request done") < position(&events, "writer told"),
            "{events:?}"
        );
        // The operator's own request did not hold the writer's stage back: the writer was told
        // (and done) while it still ran.
        assert!(
            position(&events, "writer done") < position(&events, "admin request done"),
            "{events:?}"
        );
        assert_eq!(api_request.await.unwrap().unwrap().status, 200);
        assert_eq!(admin_request.await.unwrap().unwrap().status, 200);
        for name in ["admin", "admin connection", "admin GET /slow", "writer", "http"] {
            assert_eq!(outcome_of(&report, name), &Outcome::Stopped, "{name}");
        }
        let text = report.to_string();
        assert!(text.contains("stage 2"), "{text}");
        drop(writer);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_stop_order_is_a_cycle_is_refused_naming_it() {
    let coordinator = coordinator();
    within(&coordinator, async {
        lifecycle_runtime::stop_after("writer", ["admin"]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = lifecycle_runtime::http::serve(listener, Router::new())
            .name("admin")
            .stop_after(["writer"]);
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.spawn()))
            .expect_err("a cycle is refused");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("HTTP server `admin`")
                && message.contains("`admin` → `writer` → `admin`"),
            "{message}"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

/// A server whose name is declared with `Coordinator::stop_after` (not its builder) stops with
/// its connections and requests in the same stage all the same, and a handler waiting for its
/// own shutdown signal hears it when that stage is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_declared_by_name_keeps_its_requests_in_its_stage() {
    let coordinator = coordinator();
    within(&coordinator, async {
        let events: Events = Arc::default();
        lifecycle_runtime::stop_after("admin", ["writer"]).unwrap();
        let writer = lifecycle_runtime::spawn("writer", {
            let events = events.clone();
            async move {
                lifecycle_runtime::shutdown_signal().triggered().await;
                tokio::time::sleep(Duration::from_millis(600)).await;
                event(&events, "writer done");
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        // A request of 800 ms with a stop timeout of 300 ms: cut off if timed from the stop
        // signal, not if timed from its stage (told at about 600 ms).
        let events_route = {
            let events = events.clone();
            get(move || {
                let events = events.clone();
                async move {
                    lifecycle_runtime::shutdown_signal().triggered().await;
                    event(&events, "handler told");
                    "bye"
                }
            })
        };
        let routes = slow_route(&events, Duration::from_millis(800), "admin request done")
            .route("/events", events_route)
            .merge(lifecycle_runtime::http::health_routes());
        lifecycle_runtime::http::serve(listener, routes)
            .name("admin")
            .stop_timeout(Duration::from_millis(300))
            .spawn();
        let mut slow = Connection::open(admin).await.unwrap();
        let slow = tokio::spawn(async move { slow.get("/slow").await });
        let mut waiting = Connection::open(admin).await.unwrap();
        let waiting = tokio::spawn(async move { waiting.get("/events").await });
        let mut probe = Connection::open(admin).await.unwrap();
        loop {
            let answer = probe.get("/health/tasks").await.unwrap();
            if answer.body.contains("admin GET /slow") && answer.body.contains("admin GET /events")
            {
                break;
            }

            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(probe);
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        for name in [
            "admin GET /slow",
            "admin GET /events",
            "admin connection",
            "admin",
        ] {
            assert_eq!(outcome_of(&report, name), &Outcome::Stopped, "{name}");
        }
        assert_eq!(slow.await.unwrap().unwrap().status, 200);
        assert_eq!(waiting.await.unwrap().unwrap().body, "bye");
        let events = events.lock().unwrap().clone();
        assert!(
            position(&events, "writer done") < position(&events, "handler told"),
            "the handler heard its stage, not the stop signal: {events:?}"
        );
        drop(writer);
    })
    .await;
}
