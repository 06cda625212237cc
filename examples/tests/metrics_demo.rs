//! The metrics demo as a real process: `/metrics` answers Prometheus' text format (every line a
//! comment or a sample of a declared metric, values numbers), with the runtime's metrics of the
//! demo's loops, pool, group and readiness; one SIGTERM stops it cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use lifecycle_tests::Program;
use lifecycle_tests::http::Connection;

/// How long the demo may take to have recorded everything the test looks for.
const SETTLE: Duration = Duration::from_secs(10);

/// One sample line: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses Prometheus' text exposition format (version 0.0.4), failing on the first line that is
/// not in it. Returns the samples and each metric's declared type.
fn parse(text: &str) -> Result<(Vec<Sample>, BTreeMap<String, String>), String> {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    if !is_name(name) {
                        return Err(bad("bad metric name"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(bad("unknown type"));
                    }
                    types.insert((*name).to_owned(), (*kind).to_owned());
                }
                ["HELP", name, ..] if is_name(name) => {}
                ["HELP", ..] | ["TYPE", ..] => return Err(bad("malformed HELP or TYPE")),
                _ => {}
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number.parse().map_err(|_| bad("value is not a number"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inside = rest
                    .strip_suffix('}')
                    .ok_or_else(|| bad("unclosed labels"))?;
                let mut labels = BTreeMap::new();
                for pair in split_labels(inside) {
                    let (key, quoted) =
                        pair.split_once('=').ok_or_else(|| bad("label without ="))?;
                    let value = quoted
                        .strip_prefix('"')
                        .and_then(|value| value.strip_suffix('"'))
                        .ok_or_else(|| bad("label value not quoted"))?;
                    if !is_name(key) || key.contains(':') {
                        return Err(bad("bad label name"));
                    }
                    labels.insert(
                        key.to_owned(),
                        value.replace("\\\"", "\"").replace("\\\\", "\\"),
                    );
                }
                (name, labels)
            }
        };
        if !is_name(name) {
            return Err(bad("bad metric name"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.contains_key(*base))
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(bad("sample of a metric with no TYPE line before it"));
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok((samples, types))
}

/// `a="x",b="y,z"` → `a="x"`, `b="y,z"` (commas inside quotes kept).
fn split_labels(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
        })
        .map(|sample| sample.value)
}

async fn scrape(address: SocketAddr) -> String {
    let mut connection = Connection::open(address)
        .await
        .expect("connect to the demo");
    let answer = tokio::time::timeout(Duration::from_secs(5), connection.get("/metrics"))
        .await
        .expect("/metrics answered within 5s")
        .expect("GET /metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

#[test]
fn the_metrics_demo_serves_the_runtime_metrics_as_prometheus_text() {
    let file = std::env::temp_dir().join(format!(
        "lifecycle-metrics-demo-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&file);
    let mut command = Command::new(env!("CARGO_BIN_EXE_metrics-demo"));
    command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_PATH", &file);
    let mut demo = Program::start(command, &[]);
    let address = demo.listening_address();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Until the collector ran, the flaky loop failed once (its third tick, at 600ms) and the
    // orders loop ticked twice.
    let started = Instant::now();
    let (samples, types, text) = loop {
        let text = runtime.block_on(scrape(address));
        let (samples, types) = parse(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
        let failed = value(
            &samples,
            "lifecycle_task_failures_total",
            &[("name", "flaky-upstream")],
        );
        // What grows with time (ticks, acquires) is waited for too: on a loaded machine the
        // first scrape with a failure may come before the second tick.
        let at_least_two = |name: &str, labels: &[(&str, &str)]| {
            value(&samples, name, labels).is_some_and(|count| count >= 2.0)
        };
        if failed.is_some()
            && types.contains_key("lifecycle_tasks")
            && at_least_two("lifecycle_ticks_total", &[("name", "orders-count")])
            && at_least_two(
                "lifecycle_tick_duration_seconds_count",
                &[("name", "orders-count")],
            )
            && at_least_two(
                "lifecycle_pool_acquire_seconds_count",
                &[("pool", "metrics-demo")],
            )
        {
            break (samples, types, text);
        }
        assert!(
            started.elapsed() < SETTLE,
            "not all recorded after {SETTLE:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    for (name, kind) in [
        ("lifecycle_tasks", "gauge"),
        ("lifecycle_readiness", "gauge"),
        ("lifecycle_group_permits_in_use", "gauge"),
        ("lifecycle_group_permits_waiting", "gauge"),
        ("lifecycle_resources_open", "gauge"),
        ("lifecycle_pool_connections_active", "gauge"),
        ("lifecycle_pool_connections_idle", "gauge"),
        ("lifecycle_pool_pending_acquires", "gauge"),
        ("lifecycle_ticks_total", "counter"),
        ("lifecycle_task_failures_total", "counter"),
        ("lifecycle_tick_duration_seconds", "histogram"),
        ("lifecycle_pool_acquire_seconds", "histogram"),
        ("lifecycle_pool_usage_seconds", "histogram"),
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "{name}:\n{text}"
        );
    }
    let names: BTreeSet<&str> = samples
        .iter()
        .filter(|sample| sample.name == "lifecycle_tasks")
        .filter_map(|sample| sample.labels.get("name").map(String::as_str))
        .collect();
    for task in [
        "orders-count",
        "flaky-upstream",
        "http",
        "lifecycle-metrics",
        "main",
    ] {
        assert!(names.contains(task), "{task} not among {names:?}");
    }
    assert_eq!(
        value(&samples, "lifecycle_readiness", &[("phase", "ready")]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "lifecycle_group_permits_max", &[("group", "db")]),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            "lifecycle_pool_connections_max",
            &[("pool", "metrics-demo")]
        ),
        Some(2.0)
    );
    let ticks = value(
        &samples,
        "lifecycle_ticks_total",
        &[("name", "orders-count")],
    );
    assert!(ticks >= Some(2.0), "{text}");
    let timed = value(
        &samples,
        "lifecycle_tick_duration_seconds_count",
        &[("name", "orders-count")],
    );
    assert!(timed >= Some(2.0), "{text}");
    let acquires = value(
        &samples,
        "lifecycle_pool_acquire_seconds_count",
        &[("pool", "metrics-demo")],
    );
    assert!(acquires >= Some(2.0), "{text}");
    let under_inf = value(
        &samples,
        "lifecycle_pool_acquire_seconds_bucket",
        &[("pool", "metrics-demo"), ("le", "+Inf")],
    );
    assert_eq!(
        under_inf, acquires,
        "every acquire is in the +Inf bucket:\n{text}"
    );

    demo.signal(libc::SIGTERM);
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("stopped   task lifecycle-metrics"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_parser_refuses_what_is_not_prometheus_text() {
    let good = "# TYPE up gauge\nup{job=\"a,b\"} 1\n";
    let (samples, _) = parse(good).unwrap();
    assert_eq!(samples[0].labels["job"], "a,b");
    for bad in [
        "up 1\n",
        "# TYPE up gauge\nup{job=a} 1\n",
        "# TYPE up gauge\nup{job=\"a\" 1\n",
        "# TYPE up gauge\nup one\n",
        "# TYPE 1up gauge\n",
        "# TYPE up meter\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
