//! The Kubernetes manifest's numbers agree with each other and with the demo: the grace period
//! covers the shutdown budget (which the drain runs inside) plus the stated margin, and the
//! probes hit the routes the demo serves.

/// The margin `examples/deploy/kubernetes.yaml` and the README state above the budget.
const MARGIN_SECS: u64 = 5;

const MANIFEST: &str = include_str!("../deploy/kubernetes.yaml");

/// The value of `key: value` on the first line that has it (quotes removed).
fn value_of(key: &str) -> String {
    MANIFEST
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix(&format!("{key}: ")))
        .map(|value| value.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no {key} in the manifest"))
}

/// The value of the environment variable `name` in the manifest.
fn env_value(name: &str) -> String {
    let mut lines = MANIFEST.lines().map(str::trim);
    lines
        .find(|line| *line == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("no {name} in the manifest's env"));
    let value = lines.next().expect("a line after the name");
    value
        .strip_prefix("value: ")
        .unwrap_or_else(|| panic!("{name}'s value is not on the next line: {value:?}"))
        .trim_matches('"')
        .to_owned()
}

fn seconds(text: &str) -> u64 {
    humantime::parse_duration(text)
        .unwrap_or_else(|error| panic!("{text:?}: {error}"))
        .as_secs()
}

#[test]
fn the_grace_period_is_the_budget_plus_the_margin_and_the_drain_fits_in_the_budget() {
    let grace: u64 = value_of("terminationGracePeriodSeconds").parse().unwrap();
    let budget = seconds(&env_value("LIFECYCLE_SHUTDOWN_TIMEOUT"));
    let drain = seconds(&env_value("LIFECYCLE_DRAIN"));
    let request_stop = seconds(&env_value("HTTP_STOP_TIMEOUT"));
    assert_eq!(grace, budget + MARGIN_SECS, "grace period");
    // The drain runs inside the budget, and requests still running after it get their stop
    // timeout within what is left.
    assert!(
        drain + request_stop < budget,
        "{drain} + {request_stop} >= {budget}"
    );
    assert!(
        MANIFEST.contains(&format!(
            "terminationGracePeriodSeconds = {budget} + {MARGIN_SECS} = {grace}"
        )),
        "the manifest's comment states the arithmetic"
    );
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&format!("terminationGracePeriodSeconds: {grace}")),
        "the README shows the same grace period"
    );
}

#[test]
fn the_probes_hit_the_demos_health_routes_on_its_port() {
    assert_eq!(env_value("LISTEN_ADDR"), "0.0.0.0:8080");
    assert_eq!(value_of("containerPort"), "8080");
    let probes: Vec<String> = MANIFEST
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("path: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(probes, ["/readyz", "/livez"]);
    assert!(!MANIFEST.contains("preStop:"), "no preStop sleep is needed");
}
