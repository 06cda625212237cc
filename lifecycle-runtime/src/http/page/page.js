"use strict";
// The status page's script: polls the snapshot (`health/tasks`, relative to the page) and
// redraws. No library, no build step.

const POLL_EVERY_MS = 500;
const REQUEST_TIMEOUT_MS = 2000;
const CLEAN = new Set(["stopped", "closed", "drained"]);

let lastAnswer = null;

// An element with attributes (`class`, `data-*`, ...) and children (strings become text).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function secs(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return Math.round(value * 1000) + " ms";
  if (value < 120) return value.toFixed(value < 10 ? 2 : 1) + " s";
  if (value < 7200) return Math.floor(value / 60) + " min " + Math.round(value % 60) + " s";
  return (value / 3600).toFixed(1) + " h";
}

// Replaces the rows of `selector`; `empty` says so when there are none.
function fill(selector, rows, empty) {
  const body = document.querySelector(selector);
  if (rows.length === 0 && empty) {
    const columns = body.closest("table") ? body.closest("table").querySelectorAll("th").length : 1;
    const row = body.tagName === "TBODY" ? el("tr", {}, el("td", { colspan: columns, class: "quiet" }, empty)) : el("li", { class: "quiet" }, empty);
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(...rows);
}

async function getJson(path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    const answer = await fetch(path, { signal: abort.signal, cache: "no-store" });
    if (!answer.ok) throw new Error(path + " answered " + answer.status);
    return await answer.json();
  } finally {
    clearTimeout(timer);
  }
}

// Workers of one name folded into a row: how many, their states, the latest failure.
function groupByName(workers) {
  const groups = new Map();
  for (const worker of workers) {
    let group = groups.get(worker.name);
    if (!group) {
      group = { name: worker.name, count: 0, states: new Map(), ticks: 0, restarts: 0, age: 0, failure: null, main: false };
      groups.set(worker.name, group);
    }
    group.count += 1;
    group.states.set(worker.state, (group.states.get(worker.state) || 0) + 1);
    group.ticks += worker.ticks;
    group.restarts += worker.restarts;
    group.age = Math.max(group.age, worker.age_secs);
    group.main = group.main || Boolean(worker.main);
    if (worker.last_failure) group.failure = worker.last_failure;
  }
  return [...groups.values()];
}

function workerRows(workers, attribute) {
  return groupByName(workers).map((group) => {
    const states = [...group.states.keys()];
    const failing = group.failure !== null || group.states.has("restarting");
    const stateText = states
      .map((state) => (group.states.size > 1 || group.count > 1 ? state + " ×" + group.states.get(state) : state))
      .join(", ");
    return el(
      "tr",
      { [attribute]: group.name, "data-state": states.join(" "), "data-failing": failing ? "true" : "false", class: failing ? "failing" : null },
      el("td", { class: "name" }, group.name, group.main ? el("span", { class: "tag" }, "main") : null),
      el("td", { class: "num" }, group.count),
      el("td", {}, el("span", { class: "state state-" + states[0] }, stateText)),
      el("td", { class: "num" }, group.ticks),
      el("td", { class: "num" }, group.restarts),
      el("td", { class: "num" }, secs(group.age)),
      el("td", { class: "failure" }, group.failure || ""),
    );
  });
}

function renderCounters(counters) {
  const items = Object.entries(counters || {}).flatMap(([key, value]) => [
    el("dt", {}, key.replace("_", " ")),
    el("dd", { "data-counter": key, class: (key === "failed" || key === "panicked" || key === "timed_out") && value > 0 ? "bad" : null }, value),
  ]);
  document.getElementById("counters").replaceChildren(...items);
}

function renderPools(pools) {
  const sections = pools.map((pool) => {
    const held = pool.held || [];
    const title = el("h3", {}, pool.name, " ", el("span", { class: "tag" }, pool.backend), pool.closed ? el("span", { class: "tag bad" }, "closed") : null);
    const figures = el(
      "div",
      { class: "figures" },
      figure("active", pool.in_use, "in_use"),
      figure("idle", pool.idle, "idle"),
      figure("waiting", pool.waiters, "waiters", pool.waiters > 0),
      figure("open", pool.size + " / " + pool.max_connections, "size"),
      figure("acquires", pool.acquires, "acquires"),
      figure("timeouts", pool.acquire_timeouts, "acquire_timeouts", pool.acquire_timeouts > 0),
      figure("wait avg / max", secs(pool.acquire_wait_avg_secs) + " / " + secs(pool.acquire_wait_max_secs), "wait"),
      figure("hold avg / max", secs(pool.hold_avg_secs) + " / " + secs(pool.hold_max_secs), "hold"),
      figure("suspected leaks", pool.suspected_leaks, "suspected_leaks", pool.suspected_leaks > 0),
    );
    const rows = held.map((connection) =>
      el(
        "tr",
        { "data-site": connection.site, "data-holder": connection.task || "", class: connection.task_ended ? "failing" : null },
        el("td", { class: "site" }, connection.site),
        el("td", {}, connection.task ? "task " + connection.task : "(untracked)", connection.task_ended ? " (ended)" : ""),
        el("td", { class: "num" }, secs(connection.held_for_secs)),
      ),
    );
    const table = rows.length
      ? el("table", { class: "holders" }, el("thead", {}, el("tr", {}, el("th", {}, "acquired at"), el("th", {}, "by"), el("th", {}, "held for"))), el("tbody", {}, rows))
      : el("p", { class: "quiet" }, "no connection checked out");
    return el("div", { class: "pool", "data-pool": pool.name }, title, pool.fallback_reason ? el("p", { class: "warn" }, "fallback: " + pool.fallback_reason) : null, figures, table);
  });
  document.getElementById("pools").replaceChildren(...(sections.length ? sections : [el("p", { class: "quiet" }, "no pool")]));
}

function figure(label, value, key, bad) {
  return el("div", { class: "figure" + (bad ? " bad" : ""), "data-figure": key }, el("span", { class: "value" }, value), el("span", { class: "label" }, label));
}

// One waterfall row: a label, and a bar from `start` to `end` seconds on a scale of `scale`.
function bar(label, start, end, scale, attrs, note) {
  const left = Math.min(100, (100 * start) / scale);
  const width = Math.max(0.4, Math.min(100 - left, (100 * (end - start)) / scale));
  return el(
    "div",
    Object.assign({ class: "waterfall-row" }, attrs),
    el("span", { class: "row-label", title: label }, label),
    el("span", { class: "track" }, el("span", { class: "bar", style: "left:" + left + "%;width:" + width + "%" })),
    el("span", { class: "row-note" }, note),
  );
}

function renderShutdown(view) {
  const section = document.getElementById("shutdown");
  if (!view) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const scale = Math.max(view.budget_secs, view.elapsed_secs, 0.001);
  const summary = [
    view.reason,
    view.done ? "done in " + secs(view.elapsed_secs) : secs(view.elapsed_secs) + " so far",
    "budget " + secs(view.budget_secs),
  ];
  if (view.stop_started_secs !== null && view.stop_started_secs !== undefined) summary.push("tasks told to stop at " + secs(view.stop_started_secs));
  document.getElementById("shutdown-summary").textContent = summary.join(" · ");

  const rows = [];
  const hasDrain = view.entries.some((entry) => entry.kind === "drain");
  const stopAt = view.stop_started_secs;
  if (!view.done && !hasDrain && (stopAt === null || stopAt === undefined)) {
    rows.push(bar("drain", 0, view.elapsed_secs, scale, { "data-pending": "drain", class: "waterfall-row pending" }, "draining…"));
  }
  for (const entry of view.entries) {
    // As the report prints it: the body of `main` is a task named "main".
    const kind = entry.kind === "main" ? "task" : entry.kind;
    const name = (entry.kind === "drain" ? "" : kind + " ") + entry.name + (entry.count > 1 ? " ×" + entry.count : "");
    const outcome = entry.outcome;
    const note = outcome.replace("_", " ") + " " + secs(entry.elapsed_secs) + (entry.message ? ": " + entry.message : "") + (entry.detail ? " (" + entry.detail + ")" : "");
    const cls = "waterfall-row " + (CLEAN.has(outcome) ? "clean" : outcome === "skipped" ? "skipped" : "bad") + (entry.parent ? " child" : "");
    rows.push(bar(name, entry.start_secs, entry.start_secs + entry.elapsed_secs, scale, { class: cls, "data-outcome": outcome, "data-entry": entry.name }, note));
  }
  // Once tasks are told to stop, each thing still awaited is a bar growing from that moment;
  // during the drain everything still runs, so it is listed, not drawn.
  const draining = stopAt === null || stopAt === undefined;
  if (!view.done && !draining) {
    for (const waiting of view.waiting_for) {
      rows.push(bar(waiting, stopAt, view.elapsed_secs, scale, { class: "waterfall-row pending", "data-pending": waiting }, "waiting…"));
    }
    // Workers of later stages of a stop order still work: nothing to draw until they are told.
    for (const held of view.not_told || []) {
      rows.push(
        el(
          "div",
          { class: "waterfall-row held", "data-not-told": held },
          el("span", { class: "row-label", title: held }, held),
          el("span", { class: "track" }),
          el("span", { class: "row-note" }, "not told yet: stops after an earlier stage"),
        ),
      );
    }
  }
  const still = document.getElementById("still-running");
  still.textContent = !view.done && draining && view.waiting_for.length ? "still running: " + view.waiting_for.join(", ") : "";
  const axis = el(
    "div",
    { class: "waterfall-axis" },
    el("span", { class: "row-label" }, ""),
    el(
      "span",
      { class: "track" },
      el("span", { class: "tick", style: "left:0" }, "0"),
      el("span", { class: "tick end", style: "right:0" }, secs(scale)),
      view.done ? null : el("span", { class: "now", style: "left:" + (100 * view.elapsed_secs) / scale + "%" }, "now"),
      stopAt === null || stopAt === undefined ? null : el("span", { class: "stop", style: "left:" + (100 * stopAt) / scale + "%" }, "stop"),
    ),
    el("span", { class: "row-note" }, ""),
  );
  document.getElementById("waterfall").replaceChildren(axis, ...rows);
}

function render(snapshot) {
  const phase = document.getElementById("phase");
  phase.textContent = snapshot.readiness;
  phase.dataset.phase = snapshot.readiness;
  document.body.dataset.phase = snapshot.readiness;
  document.title = "lifecycle · " + snapshot.readiness;

  renderShutdown(snapshot.shutdown);
  fill("#tasks tbody", workerRows(snapshot.tasks, "data-task"), "no task");
  document.getElementById("task-count").textContent = snapshot.tasks.length + " live" + (snapshot.starting ? ", " + snapshot.starting + " starting" : "");
  fill("#threads tbody", workerRows(snapshot.threads, "data-thread"), "no thread");
  renderCounters(snapshot.counters);
  fill(
    "#groups tbody",
    snapshot.groups.map((group) =>
      el(
        "tr",
        { "data-group": group.name, class: group.waiting > 0 ? "busy" : null },
        el("td", { class: "name" }, group.name),
        el("td", { class: "num" }, group.in_use),
        el("td", { class: "num" }, group.max_concurrent === null ? "none" : group.max_concurrent),
        el("td", { class: "num" }, group.waiting),
      ),
    ),
    "no task group",
  );
  fill(
    "#resources",
    snapshot.resources.map((resource) =>
      el(
        "li",
        { "data-resource": resource.name, "data-limit": resource.close_timeout_secs === null ? "none" : resource.close_timeout_secs },
        el("span", { class: "name" }, resource.name),
        resource.kind === "process" ? el("span", { class: "tag" }, "process") : null,
        el("span", { class: "limit" }, resource.close_timeout_secs === null ? "no close limit" : "closes within " + secs(resource.close_timeout_secs)),
      ),
    ),
    "none open",
  );
  renderPools(snapshot.pools);
}

function answering(yes, error) {
  const status = document.getElementById("connection");
  status.dataset.answering = yes ? "true" : "false";
  document.body.classList.toggle("stale", !yes);
  if (yes) {
    lastAnswer = new Date();
    status.textContent = "live";
    document.getElementById("updated").textContent = "updated " + lastAnswer.toLocaleTimeString();
  } else {
    const since = lastAnswer ? "; last answer at " + lastAnswer.toLocaleTimeString() + ", shown below" : "";
    status.textContent = "not answering (" + error + ")" + since;
  }
}

async function poll() {
  try {
    render(await getJson("health/tasks"));
    answering(true);
  } catch (error) {
    answering(false, error.name === "AbortError" ? "no answer in " + REQUEST_TIMEOUT_MS / 1000 + " s" : error.message);
  }
  setTimeout(poll, POLL_EVERY_MS);
}

poll();
