//! The status page (`/lifecycle`) of the demo service, in headless Chromium driven through
//! chromedriver (WebDriver): it lists the demo's tasks; a task that starts failing shows as
//! failing within 2 s; a held connection shows its acquiring site; on SIGTERM with a drain the
//! phase turns to draining and waterfall rows appear, and the last view stays once the server
//! stops answering.
//!
//! Each test saves a screenshot to `target/screenshots/<test>.png`. Without Chromium and
//! chromedriver (Debian's `chromium` and `chromium-driver`) the tests skip loudly; under
//! `CI=true` they fail.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use lifecycle_tests::Program;
use lifecycle_tests::http::Connection;

mod common;

/// The most any wait in these tests may take: a hang fails instead of freezing CI.
const LIMIT: Duration = Duration::from_secs(20);

/// Where the browser and its driver are looked for (Debian's packages put them here).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser at a time: on two cores, several Chromiums at once starve the demo.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// chromedriver on a free port of its own, killed with its browsers (its process group) when
/// dropped.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Driver {
    /// Starts chromedriver, or returns `None` (after skipping loudly) when Chromium is missing.
    fn start() -> Option<Driver> {
        let missing: Vec<&str> = [CHROMEDRIVER, CHROMIUM]
            .into_iter()
            .filter(|path| !Path::new(path).exists())
            .collect();
        if !missing.is_empty() {
            lifecycle_tests::skip::skip_or_fail(
                "Chromium and chromedriver (apt-get install chromium chromium-driver)",
                &format!("{} not found", missing.join(" and ")),
            );
            return None;
        }
        let port = free_port();
        let profile =
            std::env::temp_dir().join(format!("lifecycle-chromium-{}-{port}", std::process::id()));
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that Drop ends the browsers it started too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("start {CHROMEDRIVER}: {error}"));
        let driver = Driver {
            child,
            port,
            profile,
        };
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(driver)
    }

    /// A headless browser session.
    async fn browser(&self) -> Client {
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|error| panic!("start a Chromium session: {error}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = i32::try_from(self.child.id()).expect("pid fits in i32");
        // SAFETY: kill(2) on the process group of a child we started; no memory effects.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// The demo on a free port with an SQLite file of the test's own, and `env` besides.
fn demo(test: &str, env: &[(&str, &str)]) -> (Program, SocketAddr) {
    let (command, _file) = common::demo_command(&format!("page-{test}"));
    let mut demo = Program::start(command, env);
    let address = demo.listening_address();
    demo.wait_for("demo service running");
    (demo, address)
}

/// Runs `test` with a browser on the status page of a demo started with `env`, under [`LIMIT`]
/// (twice, for the start and the test), then saves a screenshot and ends the session. Skips
/// (returning `None`) without Chromium.
fn with_page<T>(
    name: &str,
    env: &[(&str, &str)],
    test: impl AsyncFnOnce(&Client, SocketAddr, &mut Program) -> T,
) -> Option<(T, Program)> {
    with_page_on(Server::Api, name, env, test)
}

/// Which of the demo's servers the browser opens the page on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    /// `LISTEN_ADDR`: the API's server, which stops when tasks are told to.
    Api,
    /// `ADMIN_ADDR`: the operator's server, which stops after the batch writer.
    Admin,
}

/// [`with_page`] with the page opened on `server`; `test` still gets the API's address.
fn with_page_on<T>(
    server: Server,
    name: &str,
    env: &[(&str, &str)],
    test: impl AsyncFnOnce(&Client, SocketAddr, &mut Program) -> T,
) -> Option<(T, Program)> {
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let driver = Driver::start()?;
    let (mut demo, address) = demo(name, env);
    let page = match server {
        Server::Api => address,
        Server::Admin => demo.logged_address("admin routes served"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the WebDriver client");
    let result = runtime.block_on(async {
        let browser = tokio::time::timeout(LIMIT, driver.browser())
            .await
            .expect("a Chromium session within the limit");
        browser
            .goto(&format!("http://{page}/lifecycle"))
            .await
            .expect("open the status page");
        let result = tokio::time::timeout(LIMIT, test(&browser, address, &mut demo)).await;
        screenshot(&browser, name).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), browser.close()).await;
        result.unwrap_or_else(|_| panic!("{name} did not finish within {LIMIT:?}"))
    });
    drop(driver);
    Some((result, demo))
}

/// Saves the page as `target/screenshots/<name>.png`.
async fn screenshot(browser: &Client, name: &str) {
    let dir = lifecycle_tests::skip::target_dir()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    let png = browser.screenshot().await.expect("take a screenshot");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

/// Waits until `css` matches an element whose text contains `text` (as shown, in any case);
/// returns that text. Fails with the page's visible text after `limit`.
async fn wait_for(browser: &Client, css: &str, text: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let elements = browser
            .find_all(Locator::Css(css))
            .await
            .expect("query the page");
        for element in elements {
            // An element redrawn between the query and this read is looked up again.
            if let Ok(found) = element.text().await
                && found.to_lowercase().contains(&text.to_lowercase())
            {
                return found;
            }
        }
        if Instant::now() > deadline {
            let body = browser.find(Locator::Css("body")).await.expect("the body");
            let shown = body.text().await.unwrap_or_default();
            panic!("no {css} with {text:?} within {limit:?}; the page shows:\n{shown}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `script` in the page and returns what it returns.
async fn read(browser: &Client, script: &str) -> serde_json::Value {
    browser
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|error| panic!("run {script:?} in the page: {error}"))
}

/// Waits until the page shows the readiness phase `phase`.
async fn wait_phase(browser: &Client, phase: &str) {
    let css = format!("#phase[data-phase=\"{phase}\"]");
    wait_for(browser, &css, phase, LIMIT).await;
}

/// `POST path` on a connection of its own; the answer's status.
async fn post(address: SocketAddr, path: &str) -> u16 {
    let mut connection = Connection::open(address)
        .await
        .expect("connect to the demo");
    let answer = connection
        .send("POST", path, None)
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {error}"));
    answer.status
}

/// Stops the demo with SIGTERM and checks it exits 0 with a clean report.
fn stop_cleanly(demo: Program) -> String {
    demo.signal(libc::SIGTERM);
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "the demo did not exit cleanly:\n{stderr}");
    stderr
}

#[test]
fn the_page_lists_the_demos_tasks_threads_resources_and_pool() {
    let Some(((), demo)) = with_page("lists_tasks", &[], async |browser, _, _| {
        wait_phase(browser, "ready").await;
        for task in ["heartbeat", "flusher", "batch-writer items", "http", "main"] {
            let css = format!("#tasks tr[data-task=\"{task}\"][data-failing=\"false\"]");
            wait_for(browser, &css, task, LIMIT).await;
        }
        // Read in one script: the page redraws its rows twice a second, so an element found in
        // one WebDriver call may be gone by the next.
        let state = read(
            browser,
            "return document.querySelector('tr[data-task=\"heartbeat\"]').dataset.state",
        )
        .await;
        let state = state.as_str();
        assert!(
            matches!(state, Some("idle" | "ticking")),
            "the heartbeat is a loop between ticks or in one: {state:?}"
        );
        wait_for(
            browser,
            "#threads tr[data-thread=\"load-sampler\"]",
            "load-sampler",
            LIMIT,
        )
        .await;
        // Resources in the order they close (the last registered first), each with its limit.
        wait_for(browser, "#resources", "store", LIMIT).await;
        let listed = read(
            browser,
            "return [...document.querySelectorAll('#resources li[data-resource]')]\
             .map((item) => [item.dataset.resource, item.dataset.limit, item.textContent])",
        )
        .await;
        let mut order = Vec::new();
        for item in listed.as_array().expect("a list") {
            let name = item[0].as_str().expect("a name");
            let limit: f64 = item[1]
                .as_str()
                .and_then(|limit| limit.parse().ok())
                .unwrap_or_else(|| panic!("{name:?} shows no limit: {item}"));
            assert!(limit > 0.0, "{name:?}: {limit}");
            let text = item[2].as_str().expect("its text");
            assert!(text.contains("closes within"), "{name:?}: {text}");
            order.push(name.to_owned());
        }
        assert_eq!(
            order,
            [
                "sidecar",
                "store",
                "batch-writer items",
                "database lifecycle-demo"
            ],
            "resources in closing order"
        );
        wait_for(browser, "[data-pool=\"lifecycle-demo\"]", "sqlite", LIMIT).await;
        wait_for(
            browser,
            "#connection[data-answering=\"true\"]",
            "live",
            LIMIT,
        )
        .await;
    }) else {
        return;
    };
    stop_cleanly(demo);
}

#[test]
fn a_task_that_starts_failing_shows_as_failing_within_2_s() {
    let env = [("DEMO_FAULTS", "1")];
    let Some(((), demo)) = with_page("task_failing", &env, async |browser, address, _| {
        let row = "#tasks tr[data-task=\"flaky\"]";
        wait_for(
            browser,
            &format!("{row}[data-failing=\"false\"]"),
            "flaky",
            LIMIT,
        )
        .await;
        assert_eq!(post(address, "/demo/faults/fail").await, 200);
        let failing = format!("{row}[data-failing=\"true\"]");
        let text = wait_for(
            browser,
            &failing,
            "upstream refused",
            Duration::from_secs(2),
        )
        .await;
        assert!(text.contains("flaky"), "{text}");
        // Switched off again, the service runs; its last failure stays on show.
        assert_eq!(post(address, "/demo/faults/recover").await, 200);
        wait_for(
            browser,
            &format!("{row}[data-state=\"running\"]"),
            "flaky",
            LIMIT,
        )
        .await;
    }) else {
        return;
    };
    stop_cleanly(demo);
}

#[test]
fn a_held_connection_shows_its_acquiring_site_and_task() {
    let env = [("DEMO_FAULTS", "1")];
    let Some(((), demo)) = with_page("held_connection", &env, async |browser, address, _| {
        wait_for(
            browser,
            "[data-pool=\"lifecycle-demo\"]",
            "no connection checked out",
            LIMIT,
        )
        .await;
        let hold = tokio::spawn(post(address, "/demo/faults/hold?ms=3000"));
        let holder =
            "[data-pool=\"lifecycle-demo\"] tr[data-site^=\"examples/service/faults.rs:\"]";
        let text = wait_for(browser, holder, "task http POST /demo/faults/hold", LIMIT).await;
        assert!(text.contains("examples/service/faults.rs:"), "{text}");
        // One connection active (read in the page: its figures are redrawn twice a second).
        let deadline = Instant::now() + LIMIT;
        loop {
            let active = read(
                browser,
                "return document.querySelector('[data-pool=\"lifecycle-demo\"] \
                 [data-figure=\"in_use\"] .value').textContent",
            )
            .await;
            if active == "1" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not one connection active: {active}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(hold.await.expect("the holding request"), 200);
        // Given back, it leaves the list.
        wait_for(
            browser,
            "[data-pool=\"lifecycle-demo\"]",
            "no connection checked out",
            LIMIT,
        )
        .await;
    }) else {
        return;
    };
    stop_cleanly(demo);
}

#[test]
fn on_sigterm_with_a_drain_the_phase_changes_and_the_waterfall_draws_until_the_server_is_gone() {
    let env = [("LIFECYCLE_DRAIN", "3s"), ("DEMO_FAULTS", "1")];
    let Some(((), demo)) = with_page(
        "shutdown_waterfall",
        &env,
        async |browser, address, demo| {
            wait_phase(browser, "ready").await;
            assert!(
                browser
                    .find(Locator::Css("#shutdown"))
                    .await
                    .expect("the shutdown section")
                    .attr("hidden")
                    .await
                    .expect("its hidden attribute")
                    .is_some(),
                "no shutdown section while running"
            );
            // Something to see: a failing service, and a request holding a connection that ends
            // during the drain.
            assert_eq!(post(address, "/demo/faults/fail").await, 200);
            let hold = tokio::spawn(post(address, "/demo/faults/hold?ms=1500"));
            wait_for(
                browser,
                "tr[data-site^=\"examples/service/faults.rs:\"]",
                "faults.rs",
                LIMIT,
            )
            .await;
            demo.signal(libc::SIGTERM);
            wait_phase(browser, "draining").await;
            wait_for(browser, "#shutdown-summary", "SIGTERM received", LIMIT).await;
            wait_for(
                browser,
                ".waterfall-row[data-pending=\"drain\"]",
                "drain",
                LIMIT,
            )
            .await;
            // The request that held the connection ended during the drain: a row of the report's.
            assert_eq!(hold.await.expect("the holding request"), 200);
            let row = ".waterfall-row[data-outcome=\"stopped\"][data-entry=\"http POST /demo/faults/hold\"]";
            wait_for(browser, row, "stopped", LIMIT).await;
            screenshot(browser, "shutdown_waterfall_draining").await;
            // At the end of the drain the server stops listening: the page says so and keeps the
            // last view.
            wait_for(
                browser,
                "#connection[data-answering=\"false\"]",
                "not answering",
                LIMIT,
            )
            .await;
            let phase = browser
                .find(Locator::Css("#phase"))
                .await
                .expect("the phase")
                .text()
                .await
                .expect("its text");
            assert!(
                ["draining", "stopping"].contains(&phase.to_lowercase().as_str()),
                "the last phase seen stays: {phase}"
            );
            let rows = browser
                .find_all(Locator::Css(".waterfall-row"))
                .await
                .expect("the waterfall's rows");
            assert!(!rows.is_empty(), "the last waterfall stays on show");
        },
    ) else {
        return;
    };
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "the demo did not exit cleanly:\n{stderr}");
    assert!(stderr.contains("drained   drain"), "{stderr}");
}

/// The page on the operator's server (`ADMIN_ADDR`, stopped after the batch writer) keeps
/// answering through the stop: it shows the phase `stopping`, two requests still running on the
/// API after the drain as awaited, then the first one's row from the report while the second
/// still runs, until its own server goes once the second has ended and the writer after it.
#[test]
fn on_sigterm_the_operators_page_draws_the_stop_until_its_server_goes() {
    let env = [("LIFECYCLE_DRAIN", "1s")];
    let Some(((), demo)) = with_page_on(
        Server::Admin,
        "shutdown_stop_waterfall",
        &env,
        async |browser, address, demo| {
            wait_phase(browser, "ready").await;
            // Two requests that outlast the drain, by about 1 s and 3 s: the API's stage waits
            // for both.
            let slow = |id: u32, delay_ms: u32| {
                tokio::spawn(async move {
                    let mut connection = Connection::open(address).await.expect("connect");
                    connection
                        .send(
                            "POST",
                            &format!("/items?delay_ms={delay_ms}"),
                            Some(format!(r#"{{"id":{id},"name":"late"}}"#)),
                        )
                        .await
                        .map(|answer| answer.status)
                })
            };
            let shorter = slow(7, 2000);
            let longer = slow(8, 4000);
            wait_for(
                browser,
                "#tasks tr[data-task=\"http POST /items\"]",
                "2",
                LIMIT,
            )
            .await;
            demo.signal(libc::SIGTERM);
            wait_phase(browser, "draining").await;
            // Tasks are told to stop: the API stops listening, its requests still run and are
            // drawn as awaited since the stop.
            wait_phase(browser, "stopping").await;
            wait_for(
                browser,
                ".waterfall-row[data-pending^=\"task http POST /items\"]",
                "waiting",
                LIMIT,
            )
            .await;
            wait_for(browser, "#waterfall .stop", "stop", LIMIT).await;
            // The writer and the operator's server are of later stages: not told yet, they
            // are listed apart, without a bar.
            for later in ["task batch-writer items", "task admin"] {
                let css = format!(".waterfall-row.held[data-not-told=\"{later}\"]");
                wait_for(browser, &css, "not told yet", LIMIT).await;
            }
            assert!(
                TcpStream::connect(address).is_err(),
                "the API still accepts connections while stopping"
            );
            // Rows read as the report's lines: the body of `main` is `task main`.
            wait_for(
                browser,
                ".waterfall-row[data-entry=\"main\"]",
                "task main",
                LIMIT,
            )
            .await;
            screenshot(browser, "shutdown_stop_waterfall_awaiting").await;
            // The shorter one ended (its item written: 201) and is the report's row, while the
            // longer one is still awaited.
            assert_eq!(shorter.await.expect("the shorter request"), Ok(201));
            let row = ".waterfall-row[data-outcome=\"stopped\"][data-entry=\"http POST /items\"]";
            wait_for(browser, row, "stopped", LIMIT).await;
            wait_for(
                browser,
                ".waterfall-row[data-pending=\"task http POST /items\"]",
                "waiting",
                LIMIT,
            )
            .await;
            screenshot(browser, "shutdown_stop_waterfall_partly_stopped").await;
            // Then the longer one, the writer's stage, and the operator's server itself: the page
            // says it is gone and keeps the last view, in the stop.
            assert_eq!(longer.await.expect("the longer request"), Ok(201));
            wait_for(
                browser,
                "#connection[data-answering=\"false\"]",
                "not answering",
                LIMIT,
            )
            .await;
            let phase = browser
                .find(Locator::Css("#phase"))
                .await
                .expect("the phase")
                .attr("data-phase")
                .await
                .expect("its phase");
            assert_eq!(
                phase.as_deref(),
                Some("stopping"),
                "the last phase seen stays"
            );
            let rows = browser
                .find_all(Locator::Css(".waterfall-row[data-outcome]"))
                .await
                .expect("the waterfall's rows");
            assert!(
                rows.len() >= 3,
                "the report's rows stay on show: {}",
                rows.len()
            );
        },
    ) else {
        return;
    };
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "the demo did not exit cleanly:\n{stderr}");
    assert!(
        stderr.contains("stopped   task http POST /items"),
        "{stderr}"
    );
    assert!(stderr.contains("stopped   task admin"), "{stderr}");
}

/// Without a browser: the page is served whole, and the snapshot it reads (`/health/tasks`)
/// names a held connection's site and task under its pool, and each resource's close limit.
#[test]
fn the_page_and_the_snapshot_it_reads_answer_over_plain_http() {
    let (demo, address) = demo("plain_http", &[("DEMO_FAULTS", "1")]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client");
    runtime.block_on(async {
        let checks = async {
            let mut connection = Connection::open(address).await.expect("connect");
            let page = connection.get("/lifecycle").await.expect("GET /lifecycle");
            assert_eq!(page.status, 200, "{page:?}");
            assert!(page.body.starts_with("<!doctype html>"), "{}", page.body);
            assert!(page.body.contains("getJson(\"health/tasks\")"));
            // The page reads nothing else.
            assert!(!page.body.contains("lifecycle/held"));
            let snapshot = |body: &str| -> serde_json::Value {
                serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"))
            };
            let idle = snapshot(
                &connection
                    .get("/health/tasks")
                    .await
                    .expect("snapshot")
                    .body,
            );
            assert_eq!(idle["pools"][0]["name"], "lifecycle-demo", "{idle}");
            assert_eq!(idle["pools"][0]["held"], serde_json::json!([]), "{idle}");
            // The demo's resources, in closing order, with their limits.
            let resources: Vec<(String, String, f64)> = idle["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .map(|resource| {
                    (
                        resource["name"].as_str().expect("a name").to_owned(),
                        resource["kind"].as_str().expect("a kind").to_owned(),
                        resource["close_timeout_secs"].as_f64().expect("a limit"),
                    )
                })
                .collect();
            assert!(
                resources.iter().any(|(name, kind, limit)| name == "sidecar"
                    && kind == "process"
                    && *limit > 0.0),
                "{resources:?}"
            );
            assert!(
                resources.iter().any(|(name, kind, limit)| name == "store"
                    && kind == "resource"
                    // `close_timeout = "2s"` for each of its fields, added up.
                    && *limit >= 2.0),
                "{resources:?}"
            );
            let hold = tokio::spawn(post(address, "/demo/faults/hold?ms=2000"));
            loop {
                let held = snapshot(
                    &connection
                        .get("/health/tasks")
                        .await
                        .expect("snapshot")
                        .body,
                );
                if let Some(holder) = held["pools"][0]["held"].get(0) {
                    let site = holder["site"].as_str().expect("a site");
                    assert!(site.starts_with("examples/service/faults.rs:"), "{holder}");
                    assert_eq!(holder["task"], "http POST /demo/faults/hold", "{holder}");
                    assert_eq!(holder["task_ended"], false, "{holder}");
                    assert_eq!(holder["by_query"], false, "{holder}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(hold.await.expect("the holding request"), 200);
        };
        tokio::time::timeout(LIMIT, checks)
            .await
            .expect("the checks finish within the limit");
    });
    stop_cleanly(demo);
}
