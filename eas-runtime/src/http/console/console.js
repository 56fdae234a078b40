// The eas console's script: reads the console's JSON routes with the session cookie and
// builds the page. Every piece of data goes into the DOM as text (textContent, text nodes,
// attributes set one by one), never as HTML; charts are drawn on canvas.
"use strict";

(function () {
  const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const COLORS = ["#2563eb", "#e8590c", "#12805c", "#c01048", "#7048e8", "#0c8599", "#5c940d", "#862e9c"];
  const state = { series: null, overview: null, stressShown: "" };

  // ---- DOM helpers: text only -------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else if (key === "title" || key === "type" || key === "colspan") node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function td(value, cls) { return el("td", { class: cls }, value === undefined || value === null ? "" : String(value)); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function byId(id) { return document.getElementById(id); }
  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const n = Number(value);
    if (!Number.isFinite(n)) return "–";
    if (Math.abs(n) >= 1000) return n.toFixed(0);
    return n.toFixed(digits === undefined ? 1 : digits);
  }
  function bytes(n) {
    if (!n) return "–";
    const mib = n / 1048576;
    return mib >= 1024 ? (mib / 1024).toFixed(2) + " GiB" : mib.toFixed(1) + " MiB";
  }
  function last(values) {
    if (!values) return null;
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && !Number.isNaN(values[i])) return values[i];
    return null;
  }
  function clock(unix) { return new Date(unix * 1000).toISOString().slice(11, 19); }

  async function getJson(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) { window.location.href = "/console"; throw new Error("signed out"); }
    if (!response.ok) { const e = new Error(path + ": " + response.status); e.status = response.status; throw e; }
    return response.json();
  }

  // ---- charts ---------------------------------------------------------------------
  // lines: [{name, values, color, dash}], t: x values (unix seconds)
  function drawChart(canvas, t, lines, opts) {
    opts = opts || {};
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 320, height = canvas.clientHeight || 120;
    canvas.width = width * ratio; canvas.height = height * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const left = 44, right = 8, top = 6, bottom = 18;
    const w = width - left - right, h = height - top - bottom;
    let max = opts.min_max || 0;
    for (const line of lines) for (const v of line.values) if (v !== null && Number.isFinite(v)) max = Math.max(max, v);
    if (max <= 0) max = 1;
    max *= 1.1;
    let lo = opts.floor || 0;
    if (opts.auto_floor) {
      let min = Infinity;
      for (const line of lines) for (const v of line.values) if (v !== null && Number.isFinite(v)) min = Math.min(min, v);
      if (Number.isFinite(min)) { lo = min * 0.9; max = Math.max(max / 1.1 * 1.02, lo + 1e-9); }
    }
    const t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
    const span = Math.max(t1 - t0, 1);
    const x = (ti) => left + (w * (ti - t0)) / span;
    const y = (v) => top + h - (h * (v - lo)) / (max - lo);
    g.strokeStyle = "#e3e6eb"; g.fillStyle = "#667085"; g.lineWidth = 1; g.font = "10px system-ui, sans-serif";
    for (let i = 0; i <= 3; i++) {
      const v = lo + ((max - lo) * i) / 3;
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(left, yy); g.lineTo(left + w, yy); g.stroke();
      g.fillText(opts.tick ? opts.tick(v) : fmt(v, v < 10 ? 2 : 0), 2, yy + 3);
    }
    if (t.length) {
      const label = opts.time_label || clock;
      g.fillText(label(t0), left, height - 4);
      const end = label(t1);
      g.fillText(end, left + w - g.measureText(end).width, height - 4);
    }
    lines.forEach((line) => {
      g.strokeStyle = line.color; g.lineWidth = 1.6;
      g.setLineDash(line.dash ? [5, 4] : []);
      g.beginPath();
      let pen = false;
      const tt = line.t || t;
      for (let i = 0; i < line.values.length; i++) {
        const v = line.values[i];
        if (v === null || !Number.isFinite(v)) { pen = false; continue; }
        const px = x(tt[i]), py = y(v);
        if (line.step && pen) g.lineTo(px, g._lastY);
        if (pen) g.lineTo(px, py); else g.moveTo(px, py);
        g._lastY = py;
        pen = true;
      }
      g.stroke();
    });
    g.setLineDash([]);
  }

  function chartCard(title, figure, figureName, t, lines, opts) {
    const canvas = el("canvas");
    const legend = el("div", { class: "legend" });
    for (const line of lines) legend.appendChild(el("span", {}, el("i", { title: line.name }), line.name));
    // Colour swatches: set through the style property, not markup.
    Array.from(legend.querySelectorAll("i")).forEach((i, k) => { i.style.background = lines[k].color; });
    const card = el("div", { class: "chart" },
      el("div", { class: "title" }, el("span", {}, title), el("span", { class: "figure", "data-figure": figureName }, figure)),
      canvas, legend);
    requestAnimationFrame(() => drawChart(canvas, t, lines, opts));
    return card;
  }

  // ---- overview: services, instances, decisions, versions --------------------------
  function renderOverview(data) {
    state.overview = data;
    byId("cluster").textContent = "cluster " + data.Cluster + ", instances " + data.Provider;
    const services = clear(byId("services-body"));
    const instances = clear(byId("instances-body"));
    const decisions = clear(byId("decisions-body"));
    const versions = clear(byId("versions-body"));
    const seriesByName = {};
    for (const s of (state.series && state.series.services) || []) seriesByName[s.name] = s;
    const allDecisions = [];
    for (const svc of data.Services || []) {
      const s = seriesByName[svc.ServiceName];
      const config = (svc.ServiceConfig && svc.ServiceConfig.model_config) || "";
      const restart = el("button", { type: "button", title: "Replace every instance of this service" }, "Restart");
      restart.addEventListener("click", () => restartService(svc.ServiceName));
      const row = el("tr", { class: "service-row", "data-service": svc.ServiceName },
        el("td", {}, el("strong", {}, svc.ServiceName)),
        el("td", {}, el("span", { class: "badge " + svc.Status, title: svc.Reason || "" }, svc.Status)),
        td(svc.CurrentVersion + (svc.LatestVersion !== svc.CurrentVersion ? " (latest " + svc.LatestVersion + ")" : "")),
        td(svc.Group || "–"),
        td(svc.Weight === undefined || svc.Weight === null ? "–" : svc.Weight, "num"),
        td(svc.RunningInstance + " / " + svc.DesiredInstance, "num"),
        el("td", { class: "num", "data-figure": "service-qps" }, fmt(s ? last(s.qps) : null)),
        td(fmt(s ? last(s.p99_ms) : null, 2), "num"),
        td(typeof config === "string" ? config.slice(0, 300) : JSON.stringify(config).slice(0, 300), "config"),
        el("td", {}, restart));
      services.appendChild(row);
      const instanceSeries = {};
      for (const i of (s && s.instances) || []) instanceSeries[i.index] = i;
      for (const inst of svc.Instances || []) {
        const is = instanceSeries[inst.Index];
        instances.appendChild(el("tr", { class: "instance-row", "data-instance": inst.InstanceName },
          td(inst.InstanceName), td(inst.Version, "num"),
          el("td", {}, el("span", { class: "badge " + inst.Status, title: inst.Reason || "" }, inst.Status)),
          td(inst.Ready ? "yes" : "no"), td(inst.RestartCount, "num"), td(inst.InFlight, "num"),
          td(inst.Device), td(fmt(is ? last(is.cpu_percent) : null), "num"),
          td(is ? bytes(last(is.memory_bytes)) + (is.shared_memory ? " (server, shared)" : "") : "–"),
          td(inst.StartTime)));
      }
      for (const d of svc.ScalingDecisions || []) allDecisions.push([d, svc.ServiceName]);
      for (const v of svc.Versions || []) {
        versions.appendChild(el("tr", {}, td(svc.ServiceName), td(v.Version + (v.Current ? " (current)" : ""), "num"), td(v.BuildTime), td(v.Message)));
      }
    }
    allDecisions.sort((a, b) => (a[0].Time < b[0].Time ? 1 : -1));
    for (const [d, name] of allDecisions.slice(0, 50)) {
      decisions.appendChild(el("tr", { class: "decision-row" }, td(d.Time), td(name), td(d.Current + " → " + d.Desired, "num"), td(d.Reason)));
    }
    if (!allDecisions.length) decisions.appendChild(el("tr", {}, el("td", { colspan: 4, class: "note" }, "no decisions yet")));
  }

  async function restartService(name) {
    const message = byId("action-message");
    try {
      const response = await fetch("/console/api/services/" + encodeURIComponent(name) + "/restart", {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": CSRF },
      });
      const body = await response.json();
      message.textContent = name + ": " + (body.message || body.error || response.status);
    } catch (e) { message.textContent = String(e); }
  }

  // ---- monitoring ------------------------------------------------------------------
  function renderSeries(data) {
    state.series = data;
    const body = clear(byId("monitoring-body"));
    if (!data.services.length) { body.appendChild(el("p", { class: "note" }, "no services")); return; }
    for (const s of data.services) {
      const card = el("div", { class: "service-card", "data-service": s.name });
      card.appendChild(el("h3", {}, s.name, " ", el("small", {}, s.t.length + " s of data")));
      const charts = el("div", { class: "charts" });
      charts.appendChild(chartCard("Requests per second", fmt(last(s.qps)), "qps", s.t, [{ name: "QPS", values: s.qps, color: COLORS[0] }]));
      charts.appendChild(chartCard("Latency, ms", fmt(last(s.p99_ms), 2) + " p99", "p99", s.t, [
        { name: "p50", values: s.p50_ms, color: COLORS[2] }, { name: "p90", values: s.p90_ms, color: COLORS[1] },
        { name: "p99", values: s.p99_ms, color: COLORS[3] }]));
      charts.appendChild(chartCard("Mean batch size", fmt(last(s.batch), 2), "batch", s.t, [{ name: "requests per call", values: s.batch, color: COLORS[4] }], { min_max: 1 }));
      charts.appendChild(chartCard("Errors per second", fmt(last(s.errors_4xx)) + " / " + fmt(last(s.errors_5xx)), "errors", s.t, [
        { name: "4xx", values: s.errors_4xx, color: COLORS[1] }, { name: "5xx", values: s.errors_5xx, color: COLORS[3] }]));
      charts.appendChild(chartCard("Replicas", last(s.ready) + " / " + last(s.desired), "replicas", s.t, [
        { name: "ready", values: s.ready, color: COLORS[2] }, { name: "desired", values: s.desired, color: COLORS[0], dash: true }], { min_max: 1 }));
      const cpu = s.instances.map((i, k) => ({ name: "#" + i.index, values: i.cpu_percent, t: i.t, color: COLORS[k % COLORS.length] }));
      charts.appendChild(chartCard("CPU, % of the cpu requested", cpu.map((c) => fmt(last(c.values))).join(" "), "cpu", s.t, cpu));
      const mem = s.instances.map((i, k) => ({ name: "#" + i.index + (i.shared_memory ? " (server)" : ""), values: i.memory_bytes.map((b) => b / 1048576), t: i.t, color: COLORS[k % COLORS.length] }));
      charts.appendChild(chartCard("Memory, MiB", mem.map((m) => fmt(last(m.values), 0)).join(" "), "memory", s.t, mem, { auto_floor: true }));
      card.appendChild(charts);
      body.appendChild(card);
    }
    if (data.truncated) body.appendChild(el("p", { class: "note" }, "some services or instances are left out (too many to keep)"));
  }

  // ---- stress reports --------------------------------------------------------------
  function taskList(data) {
    if (Array.isArray(data)) return data;
    if (data && typeof data === "object") for (const v of Object.values(data)) if (Array.isArray(v)) return v;
    return [];
  }
  function pick(object, names) {
    for (const n of names) if (object && object[n] !== undefined && object[n] !== null) return object[n];
    return undefined;
  }
  async function refreshStress() {
    const body = byId("stress-body");
    let tasks = [];
    try { tasks = taskList(await getJson("/console/api/stress")); } catch (e) { tasks = []; }
    const key = JSON.stringify(tasks);
    if (key === state.stressShown) return;
    state.stressShown = key;
    clear(body);
    if (!tasks.length) { body.appendChild(el("p", { class: "note", "data-empty": "stress" }, "no stress reports")); return; }
    const table = el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "Task"), el("th", {}, "Status"), el("th", {}, "Capacity QPS"), el("th", {}, "Message"))));
    const rows = el("tbody");
    table.appendChild(rows);
    body.appendChild(table);
    const charts = el("div", { class: "charts" });
    body.appendChild(charts);
    for (const task of tasks.slice(0, 20)) {
      const name = String(pick(task, ["name", "Name", "TaskName", "task_name"]) || "");
      const status = pick(task, ["status", "Status", "state", "State"]);
      const row = el("tr", {}, td(name), td(status === undefined ? "" : typeof status === "string" ? status : JSON.stringify(status)), td("–", "num"), td(pick(task, ["message", "Message", "reason", "Reason"]) || ""));
      rows.appendChild(row);
      if (!name) continue;
      getJson("/console/api/stress/" + encodeURIComponent(name) + "/report").then((report) => {
        row.children[2].textContent = fmt(report.capacity_qps);
        const seconds = report.seconds || [];
        const t = seconds.map((s) => s.second);
        const label = (v) => v + " s";
        charts.appendChild(chartCard(name + ": QPS", fmt(report.capacity_qps) + " capacity", "stress-qps", t, [
          { name: "achieved", values: seconds.map((s) => s.qps), color: COLORS[0] },
          { name: "target", values: seconds.map((s) => s.target), color: COLORS[1], dash: true }], { time_label: label }));
        charts.appendChild(chartCard(name + ": latency, ms", "", "stress-latency", t, [
          { name: "p50", values: seconds.map((s) => s.latency_ms && s.latency_ms.p50), color: COLORS[2] },
          { name: "p99", values: seconds.map((s) => s.latency_ms && s.latency_ms.p99), color: COLORS[3] }], { time_label: label }));
      }).catch(() => {});
    }
  }

  // ---- spot prices -----------------------------------------------------------------
  async function refreshPrices() {
    const body = byId("prices-body");
    let data;
    try { data = await getJson("/console/api/prices"); } catch (e) { clear(body).appendChild(el("p", { class: "note" }, "no price data")); return; }
    clear(body);
    if (!data.curves.length) { body.appendChild(el("p", { class: "note" }, "no price traces were given to the platform")); return; }
    byId("prices-window").textContent = data.window_h + " h to " + new Date(data.to * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
    const byType = {};
    for (const c of data.curves) (byType[c.instance_type] = byType[c.instance_type] || []).push(c);
    const charts = el("div", { class: "charts" });
    const rows = el("tbody");
    const day = (v) => new Date(v * 1000).toISOString().slice(5, 16).replace("T", " ");
    for (const [type, curves] of Object.entries(byType)) {
      const lines = [];
      curves.forEach((c, k) => {
        const color = COLORS[k % COLORS.length];
        lines.push({ name: c.zone, t: c.points.map((p) => p[0]), values: c.points.map((p) => p[1]), color, step: true });
        if (c.bid !== null && c.bid !== undefined) lines.push({ name: c.zone + " bid", t: [data.from, data.to], values: [c.bid, c.bid], color, dash: true });
        const now = c.points.length ? c.points[c.points.length - 1][1] : null;
        rows.appendChild(el("tr", { class: "price-row" }, td(type), td(c.zone), td(fmt(now, 4), "num"), td(fmt(c.bid, 4), "num"), td(fmt(c.on_demand, 4), "num")));
      });
      const bids = curves.map((c) => c.bid).filter((b) => b !== null && b !== undefined);
      charts.appendChild(chartCard(type + ", USD/h", bids.length ? "bid " + fmt(Math.max(...bids), 4) : "", "price", [data.from, data.to], lines,
        { auto_floor: true, time_label: day, tick: (v) => v.toFixed(3) }));
    }
    body.appendChild(charts);
    body.appendChild(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "Type"), el("th", {}, "Zone"), el("th", {}, "Spot now"), el("th", {}, "Recommended bid"), el("th", {}, "On-demand"))), rows));
  }

  // ---- simulator report viewer -----------------------------------------------------
  function renderSimulation(text) {
    const body = clear(byId("sim-body"));
    const message = byId("sim-message");
    let report;
    try { report = JSON.parse(text); } catch (e) { message.textContent = "not JSON: " + e.message; return; }
    if (!report || typeof report !== "object" || !Array.isArray(report.timeline)) { message.textContent = "not an eas simulate report (no timeline)"; return; }
    message.textContent = "";
    const figures = el("dl", { class: "figures" });
    const add = (label, value) => figures.appendChild(el("div", {}, el("dt", {}, label), el("dd", {}, value)));
    add("Service", report.service); add("Policy", report.policy); add("Start", report.start);
    add("Duration", fmt(report.duration_s / 3600, 1) + " h"); add("Requests", fmt(report.requests, 0));
    add("Cost", "$" + fmt(report.cost_usd, 2)); add("On-demand cost", "$" + fmt(report.on_demand_cost_usd, 2));
    add("Lower bound", "$" + fmt(report.optimal_cost_usd, 2)); add("Savings", fmt(100 * report.savings_vs_on_demand, 1) + " %");
    add("Availability", fmt(report.availability, 5)); add("p50 / p99", fmt(report.p50_ms, 0) + " / " + fmt(report.p99_ms, 0) + " ms");
    add("Preemptions", report.preemptions); add("Launches (failed)", report.launches + " (" + report.launch_failures + ")");
    body.appendChild(figures);
    const tl = report.timeline;
    const t = tl.map((p) => p.t_s);
    const hours = (v) => (v / 3600).toFixed(1) + " h";
    const charts = el("div", { class: "charts" });
    charts.appendChild(chartCard("Demand, QPS", "", "sim-demand", t, [{ name: "demand", values: tl.map((p) => p.demand_qps), color: COLORS[0] }], { time_label: hours }));
    charts.appendChild(chartCard("Instances", "", "sim-instances", t, [
      { name: "needed", values: tl.map((p) => p.needed), color: COLORS[4], dash: true }, { name: "desired", values: tl.map((p) => p.desired), color: COLORS[0] },
      { name: "spot", values: tl.map((p) => p.spot), color: COLORS[2] }, { name: "on-demand", values: tl.map((p) => p.on_demand), color: COLORS[1] }], { time_label: hours }));
    charts.appendChild(chartCard("USD per hour", "", "sim-cost", t, [
      { name: "fleet", values: tl.map((p) => p.fleet_usd_per_hour), color: COLORS[3] },
      { name: "cheapest spot", values: tl.map((p) => (p.spot_usd_per_hour === null ? null : p.spot_usd_per_hour)), color: COLORS[2] }], { time_label: hours }));
    charts.appendChild(chartCard("Backlog, requests", "", "sim-backlog", t, [{ name: "backlog", values: tl.map((p) => p.backlog), color: COLORS[1] }], { time_label: hours }));
    body.appendChild(charts);
    const hoursTable = el("tbody");
    for (const [type, h] of Object.entries(report.instance_hours || {})) hoursTable.appendChild(el("tr", {}, td(type), td(fmt(h.spot, 1), "num"), td(fmt(h.on_demand, 1), "num")));
    body.appendChild(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "Instance type"), el("th", {}, "Spot hours"), el("th", {}, "On-demand hours"))), hoursTable));
  }
  function setUpSimulator() {
    byId("sim-render").addEventListener("click", () => renderSimulation(byId("sim-text").value));
    byId("sim-file").addEventListener("change", (event) => {
      const file = event.target.files && event.target.files[0];
      if (!file) return;
      file.text().then((text) => { byId("sim-text").value = text; renderSimulation(text); });
    });
  }

  // ---- refresh loop ----------------------------------------------------------------
  async function refresh() {
    const status = byId("live-status");
    try {
      const [series, overview] = await Promise.all([getJson("/console/api/series"), getJson("/console/api/overview")]);
      renderSeries(series);
      renderOverview(overview);
      status.textContent = "live · updated " + new Date().toISOString().slice(11, 19) + " UTC";
      document.body.setAttribute("data-loaded", "1");
    } catch (e) {
      status.textContent = "not updated: " + e.message;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpSimulator();
    refresh();
    refreshPrices();
    refreshStress();
    setInterval(refresh, 2000);
    setInterval(refreshStress, 10000);
  });
})();
