// The Gleitzeit dashboard: polls the gateway's status and the dashboard's history once a
// second and draws them. Every string from the gateway is written as text (textContent,
// append), never as HTML: resource ids and model names come from configs and upstreams.
"use strict";

(() => {
  const POLL_MS = 1000;
  const MAX_EVENTS = 200;
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2",
    "#db2777", "#65a30d", "#9333ea", "#ea580c"];
  const EVENT_KINDS = new Set(["added", "removed", "draining", "undrained", "health",
    "breaker", "ejected", "readmitted"]);
  const GOOD_KINDS = new Set(["added", "undrained", "readmitted"]);
  const WARN_KINDS = new Set(["draining", "removed"]);

  // Whether an event is a recovery, a warning or a failure, by its kind and where it went.
  function severity(kind, detail) {
    if (GOOD_KINDS.has(kind)) return "good";
    if (WARN_KINDS.has(kind)) return "warn";
    const to = String(detail).split("->")[1] || "";
    if (kind === "health" && /^\s*healthy/.test(to)) return "good";
    if (kind === "breaker" && /^\s*(closed|disabled)/.test(to)) return "good";
    return "bad";
  }

  const state = {
    since: 0,
    windowS: 900,
    samples: new Map(), // keyOf(hub, resource) -> {t: [], p95: [], rate: []}
    rows: new Map(), // keyOf(hub, resource) -> <tr>
    hubSections: new Map(), // hub name -> {section, title, tbody}
    charts: null, // {keys, latency, throughput}
    eventLog: [], // {t, severity} of the events shown, for the charts' markers
    admin: false,
    loggedOut: false,
    timer: null,
    polling: false,
    pollAgain: false,
    rendered: false,
  };

  const byId = (id) => document.getElementById(id);
  // hub and resource in one unambiguous map key (either may contain "/")
  const keyOf = (hub, resource) => JSON.stringify([hub, resource]);
  const labelOf = (key) => JSON.parse(key).join("/");

  // An element with text children only (strings become text nodes, never markup).
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
    return node;
  }

  const ms = (v) => (v === null || v === undefined ? "-" : v < 10 ? v.toFixed(1) : v.toFixed(0));
  const pct = (v) => (v === null || v === undefined ? "-" : (100 * v).toFixed(1));
  const num = (v, digits = 1) => (typeof v === "number" ? v.toFixed(digits) : "-");
  const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);
  const clock = (t) => new Date(t * 1000).toLocaleTimeString();

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // Every call has a deadline: a gateway that hangs must not freeze the page's polling.
  async function request(url, options = {}, timeoutMs = 10000) {
    const reply = await fetch(url, {
      cache: "no-store",
      credentials: "same-origin",
      signal: AbortSignal.timeout(timeoutMs),
      ...options,
      headers: { Accept: "application/json", ...(options.headers || {}) },
    });
    let body = null;
    try {
      body = await reply.json();
    } catch (_) {
      body = null;
    }
    if (!reply.ok) {
      const message = body && typeof body.error === "string" ? body.error : reply.statusText;
      throw new HttpError(reply.status, message);
    }
    return body;
  }

  const postJSON = (url, data, timeoutMs = 10000) => request(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
  }, timeoutMs);

  function setConnection(text, kind) {
    const badge = byId("connection");
    badge.textContent = text;
    badge.className = `badge ${kind}`;
  }

  function notice(text, isError) {
    const box = byId("notice");
    box.textContent = text;
    box.className = isError ? "notice error" : "notice";
    box.hidden = !text;
  }

  // -- resources --------------------------------------------------------------------------
  function stateOf(res) {
    if (res.health === "unhealthy") return "down";
    if (res.ejected) return "ejected";
    if (res.draining) return "draining";
    if (res.breaker === "open" || res.breaker === "forced_open") return "breaker-open";
    if (res.health === "unknown") return "unknown";
    return "up";
  }

  function modelsOf(res) {
    const details = res.details || {};
    const loaded = details.loaded;
    if (loaded && typeof loaded === "object") {
      const names = Array.isArray(loaded) ? loaded.map(String) : Object.keys(loaded);
      return names.length ? names.join(", ") : "none loaded";
    }
    return "-";
  }

  const COLUMNS = ["resource", "state", "health", "breaker", "ejections", "in flight",
    "req/s (10 s)", "error %", "p50 ms", "p95 ms", "p99 ms", "loaded models", ""];

  function hubSection(hub) {
    let entry = state.hubSections.get(hub.name);
    if (entry) return entry;
    const title = el("h2", "");
    const thead = el("thead", "", el("tr", "", ...COLUMNS.map((c) => el("th", "", c))));
    const tbody = el("tbody", "");
    const section = el("section", "hub", title, el("table", "", thead, tbody));
    section.dataset.hub = hub.name;
    byId("hubs").append(section);
    entry = { section, title, tbody };
    state.hubSections.set(hub.name, entry);
    return entry;
  }

  function resourceRow(hubName, res, tbody) {
    const key = keyOf(hubName, res.id);
    let tr = state.rows.get(key);
    if (!tr) {
      tr = el("tr", "");
      tr.dataset.hub = hubName;
      tr.dataset.resource = res.id;
      tr.dataset.key = key;
      for (let i = 0; i < COLUMNS.length; i += 1) tr.append(el("td", ""));
      const button = el("button", "action", "");
      button.type = "button";
      button.addEventListener("click", () => toggleDrain(tr, button));
      tr.lastChild.append(button);
      tbody.append(tr);
      state.rows.set(key, tr);
    }
    return tr;
  }

  // Calls per second over the last 10 s of history; the status's own figure (over its
  // window of recent calls, however old) until the history has samples.
  function recentRate(key, fallback) {
    const series = state.samples.get(key);
    if (!series || !series.rate.length) return fallback;
    const last = series.rate.slice(-10);
    return last.reduce((sum, v) => sum + (v || 0), 0) / last.length;
  }

  function fillRow(tr, res) {
    const m = res.metrics;
    const word = stateOf(res);
    const ejected = res.ejected ? ` (ejected ${Math.round(res.ejected_for_s)} s)` : "";
    const values = [
      res.id,
      word,
      res.health + (res.health_detail ? `: ${clip(res.health_detail, 48)}` : ""),
      res.breaker,
      `${res.ejections}${ejected}`,
      res.in_flight,
      num(recentRate(tr.dataset.key, m.rate_per_s)),
      pct(m.error_rate),
      ms(m.p50_ms),
      ms(m.p95_ms),
      ms(m.p99_ms),
      modelsOf(res),
    ];
    values.forEach((value, i) => {
      const cell = tr.children[i];
      const text = String(value);
      if (cell.textContent !== text) cell.textContent = text;
    });
    tr.className = `state-${word}`;
    tr.children[1].className = "state";
    tr.children[0].title = res.endpoint;
    tr.children[2].title = res.health_detail || "";
    const button = tr.lastChild.firstChild;
    button.dataset.draining = res.draining ? "1" : "0";
    if (!button.dataset.busy) button.textContent = res.draining ? "Un-drain" : "Drain";
    button.hidden = !state.admin;
  }

  async function toggleDrain(tr, button) {
    const { hub, resource } = tr.dataset;
    const undrain = button.dataset.draining === "1";
    button.dataset.busy = "1";
    button.disabled = true;
    button.textContent = undrain ? "un-draining" : "draining";
    try {
      if (undrain) {
        await postJSON("undrain", { hub, resource });
        notice(`${hub}/${resource} is back in rotation`);
      } else {
        // the gateway waits up to 60 s for calls in flight; the page a little longer
        await postJSON("drain", { hub, resource, remove: false, timeout: 60 }, 65000);
        notice(`${hub}/${resource} is drained: no new calls go to it`);
      }
    } catch (error) {
      if (!undrain && error.status === 504) {
        // no new calls go to it already; the ones in flight are still running
        notice(`${hub}/${resource} is draining: ${error.message}`);
      } else {
        notice(`${undrain ? "un-drain" : "drain"} ${hub}/${resource} failed: ${error.message}`, true);
      }
    } finally {
      delete button.dataset.busy;
      button.disabled = false;
      poll();
    }
  }

  function renderHubs(status) {
    const seen = new Set();
    const hubsSeen = new Set();
    for (const hub of status.hubs || []) {
      hubsSeen.add(hub.name);
      const entry = hubSection(hub);
      const c = hub.counters || {};
      entry.title.textContent = `hub ${hub.name} (${hub.kind}, ${hub.strategy}) · leases ${c.leases || 0}`
        + ` · failovers ${c.failovers || 0} · no resource ${c.no_resource || 0}`
        + (hub.panic ? " · PANIC: routing to unhealthy resources" : "");
      entry.section.classList.toggle("panic", Boolean(hub.panic));
      for (const res of hub.resources || []) {
        const key = keyOf(hub.name, res.id);
        seen.add(key);
        fillRow(resourceRow(hub.name, res, entry.tbody), res);
      }
    }
    for (const [key, tr] of state.rows) {
      if (!seen.has(key)) {
        tr.remove();
        state.rows.delete(key);
        state.samples.delete(key);
      }
    }
    for (const [name, entry] of state.hubSections) {
      if (!hubsSeen.has(name)) {
        entry.section.remove();
        state.hubSections.delete(name);
      }
    }
  }

  // -- paths ------------------------------------------------------------------------------
  function pathRows(paths) {
    // {"hub": {...}, "legacy": {...}, "rollout": {...}} or {provider: {"hub": {...}, ...}}
    const flat = paths.hub || paths.legacy;
    if (flat && typeof flat.requests === "number") {
      return [["hub", ""], ["legacy", ""]]
        .filter(([name]) => paths[name])
        .map(([name]) => ({ path: name, provider: "", numbers: paths[name] }));
    }
    const rows = [];
    for (const [provider, served] of Object.entries(paths)) {
      if (provider === "rollout" || !served || typeof served !== "object") continue;
      for (const [path, numbers] of Object.entries(served)) {
        if (numbers && typeof numbers.requests === "number") rows.push({ path, provider, numbers });
      }
    }
    return rows;
  }

  function renderPaths(status) {
    const box = byId("paths");
    const paths = status.paths && typeof status.paths === "object" ? status.paths : {};
    const rows = pathRows(paths);
    const parts = [];
    if (rows.length) {
      const head = ["path", "provider", "requests", "error %", "p50 ms", "p95 ms", "p99 ms"];
      const body = rows.map(({ path, provider, numbers }) => {
        const tr = el("tr", `path-${path === "legacy" ? "legacy" : "hub"}`,
          el("td", "", path), el("td", "", provider || "-"), el("td", "", numbers.requests),
          el("td", "", pct(numbers.error_rate)), el("td", "", ms(numbers.p50_ms)),
          el("td", "", ms(numbers.p95_ms)), el("td", "", ms(numbers.p99_ms)));
        tr.dataset.path = path;
        return tr;
      });
      parts.push(el("table", "", el("thead", "", el("tr", "", ...head.map((h) => el("th", "", h)))),
        el("tbody", "", ...body)));
    }
    const legacy = rows.filter((r) => r.path === "legacy" && r.numbers.requests > 0);
    if (!legacy.length) parts.push(el("p", "muted no-legacy", "no legacy traffic"));
    const rollout = paths.rollout;
    if (rollout && typeof rollout === "object") {
      const items = Object.entries(rollout).map(([k, v]) => el("li", "",
        `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`));
      parts.push(el("h3", "", "rollout"), el("ul", "rollout", ...items));
    }
    box.replaceChildren(...parts);
  }

  // -- history and charts -----------------------------------------------------------------
  function absorbHistory(hist) {
    state.windowS = hist.window_s || state.windowS;
    for (const [hub, resources] of Object.entries(hist.series || {})) {
      for (const [resource, columns] of Object.entries(resources)) {
        const key = keyOf(hub, resource);
        let series = state.samples.get(key);
        if (!series) {
          series = { t: [], p95: [], rate: [] };
          state.samples.set(key, series);
        }
        series.t.push(...columns.t);
        series.p95.push(...columns.p95_ms);
        series.rate.push(...columns.rate);
      }
    }
    const oldest = hist.now - state.windowS;
    for (const series of state.samples.values()) {
      let drop = 0;
      while (drop < series.t.length && series.t[drop] < oldest) drop += 1;
      if (drop) {
        series.t.splice(0, drop);
        series.p95.splice(0, drop);
        series.rate.splice(0, drop);
      }
    }
    const events = hist.events || [];
    if (events.length) renderEvents(events);
    state.since = hist.now;
  }

  function chartData(keys, column) {
    const times = new Set();
    for (const key of keys) for (const t of state.samples.get(key).t) times.add(t);
    const xs = [...times].sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const data = [xs];
    for (const key of keys) {
      const series = state.samples.get(key);
      const ys = new Array(xs.length).fill(null);
      series.t.forEach((t, i) => { ys[index.get(t)] = series[column][i]; });
      data.push(ys);
    }
    return data;
  }

  const MARKER_COLOURS = { good: "#15803d", warn: "#b45309", bad: "#b91c1c" };

  // Dashed vertical lines at the events' times, coloured by severity: the charts and the
  // timeline on one time axis.
  function eventMarkers() {
    return {
      hooks: {
        draw: [(u) => {
          const { ctx, bbox } = u;
          ctx.save();
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1;
          for (const event of state.eventLog) {
            if (event.t < u.scales.x.min || event.t > u.scales.x.max) continue;
            const x = Math.round(u.valToPos(event.t, "x", true));
            ctx.strokeStyle = MARKER_COLOURS[event.severity];
            ctx.beginPath();
            ctx.moveTo(x, bbox.top);
            ctx.lineTo(x, bbox.top + bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
  }

  function makeChart(target, keys, unit) {
    const width = Math.max(300, target.clientWidth || 600);
    const opts = {
      width,
      height: 220,
      scales: { x: { time: true } },
      plugins: [eventMarkers()],
      axes: [{}, { label: unit, size: 60 }],
      series: [{}, ...keys.map((key, i) => ({
        label: labelOf(key),
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: false,
      }))],
    };
    target.replaceChildren();
    return new window.uPlot(opts, [[], ...keys.map(() => [])], target);
  }

  function renderCharts() {
    if (typeof window.uPlot !== "function") return;
    const keys = [...state.samples.keys()].sort();
    const sameKeys = state.charts && state.charts.keys.join("\n") === keys.join("\n");
    if (!sameKeys) {
      if (state.charts) {
        state.charts.latency.destroy();
        state.charts.throughput.destroy();
      }
      state.charts = {
        keys,
        latency: makeChart(byId("latency-chart"), keys, "ms"),
        throughput: makeChart(byId("throughput-chart"), keys, "req/s"),
      };
    }
    state.charts.latency.setData(chartData(keys, "p95"));
    state.charts.throughput.setData(chartData(keys, "rate"));
  }

  window.addEventListener("resize", () => {
    if (!state.charts) return;
    for (const chart of [state.charts.latency, state.charts.throughput]) {
      chart.setSize({ width: Math.max(300, chart.root.parentNode.clientWidth), height: 220 });
    }
  });

  function renderEvents(events) {
    const list = byId("events");
    for (const event of events) {
      const kind = EVENT_KINDS.has(event.kind) ? event.kind : "other";
      const level = severity(kind, event.detail);
      state.eventLog.push({ t: event.t, severity: level });
      const item = el("li", `event event-${kind} ${level}`,
        el("time", "", clock(event.t)), " ",
        el("span", "kind", event.kind), " ",
        el("span", "who", `${event.hub}/${event.resource}`), " ",
        el("span", "detail", event.detail));
      item.dataset.kind = kind;
      list.prepend(item);
    }
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    if (state.eventLog.length > MAX_EVENTS) state.eventLog.splice(0, state.eventLog.length - MAX_EVENTS);
  }

  // -- polling and login ------------------------------------------------------------------
  function showLogin(message) {
    byId("login").hidden = false;
    byId("main").hidden = true;
    byId("logout").hidden = true;
    byId("login-error").textContent = message || "";
    setConnection("key needed", "warn");
    byId("key").focus();
  }

  // One poll at a time: a poll asked for while one runs (after a drain, a login) runs next.
  async function poll() {
    if (state.polling) {
      state.pollAgain = true;
      return;
    }
    state.polling = true;
    clearTimeout(state.timer);
    state.timer = null;
    try {
      await pollOnce();
    } finally {
      state.polling = false;
    }
    if (state.pollAgain) {
      state.pollAgain = false;
      poll();
    }
  }

  async function pollOnce() {
    try {
      const [status, hist] = await Promise.all([
        request("status"),
        request(`ui/history?since=${encodeURIComponent(state.since)}`),
      ]);
      state.admin = Boolean(hist.caller && hist.caller.admin);
      byId("login").hidden = true;
      byId("main").hidden = false;
      byId("logout").hidden = !hist.auth;
      byId("caller").textContent = hist.caller && hist.caller.name
        ? `key ${hist.caller.name}${state.admin ? " (admin)" : ""}` : "";
      byId("version").textContent = status.version ? `v${status.version}` : "";
      absorbHistory(hist);
      renderHubs(status);
      renderPaths(status);
      renderCharts();
      byId("updated").textContent = `updated ${clock(hist.now)}`;
      setConnection("live", "ok");
      if (!state.rendered) {
        state.rendered = true;
        document.documentElement.dataset.firstRenderMs = String(Math.round(performance.now()));
      }
    } catch (error) {
      if (error instanceof HttpError && error.status === 401) {
        showLogin();
        return; // polling resumes after a login
      }
      setConnection(`gateway unreachable: ${error.message}`, "bad");
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  byId("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = byId("key");
    try {
      await postJSON("ui/login", { key: input.value });
      input.value = "";
      byId("login-error").textContent = "";
      poll();
    } catch (error) {
      showLogin(error.status === 401 ? "wrong key" : error.message);
    }
  });

  byId("logout").addEventListener("click", async () => {
    try {
      await postJSON("ui/logout", {});
    } finally {
      showLogin("logged out");
    }
  });

  // The renderers, for tests that feed them data a live gateway cannot easily produce (the
  // hub-era paths section, hostile model names); they only ever write text.
  window.gleitzeitDashboard = Object.freeze({ renderHubs, renderPaths, renderEvents });

  poll();
})();
