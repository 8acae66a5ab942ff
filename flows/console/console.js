// freshrec console: live figures from GET /stats, a user inspector on
// GET /inspect/{user} and GET /users/{user}/events, events sent with POST /events.
// Plain JS, no build step; served by `freshrec serve`.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("freshrec-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("freshrec-key", keyInput.value.trim()));

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = keyInput.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status}: ${body.detail || response.statusText}`);
  return body;
}

const text = (el, value) => { el.textContent = value; };
const fmtMs = (s) => (s === null || s === undefined ? "–" : s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`);
const fmtNum = (x, digits = 0) => (x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined, { maximumFractionDigits: digits }));
const ago = (ts) => (ts ? `${Math.max(0, Date.now() / 1000 - ts).toFixed(1)} s ago` : "never");

function spark(svg, ...series) {
  const all = series.flat().filter((v) => v !== null && v !== undefined);
  const top = Math.max(...all, 1e-9);
  svg.replaceChildren(...series.map((values, n) => {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    const step = 300 / Math.max(values.length - 1, 1);
    const points = values.map((v, i) => (v === null || v === undefined ? null : `${(i * step).toFixed(1)},${(58 - 56 * (v / top)).toFixed(1)}`));
    line.setAttribute("points", points.filter((p) => p !== null).join(" "));
    if (n) line.setAttribute("class", "second");
    return line;
  }));
}

async function pollStats() {
  try {
    const { endpoints, points } = await api("/stats");
    const last = points[points.length - 1] || {};
    text($("flow-status"), `flow metrics: ${last.up ?? 0} of ${endpoints.length} endpoint(s) answering · ${fmtNum(last.applied)} events applied, ${fmtNum(last.rejected)} rejected`);
    text($("stat-eps"), fmtNum(last.events_per_s));
    text($("stat-fresh"), `${fmtMs(last.freshness_p50)} / ${fmtMs(last.freshness_p99)}`);
    text($("stat-lag"), fmtNum(last.lag));
    text($("stat-hr"), last.hit_rate === null || last.hit_rate === undefined ? "–" : last.hit_rate.toFixed(3));
    const recent = points.slice(-120);
    spark($("chart-eps"), recent.map((p) => p.events_per_s));
    spark($("chart-fresh"), recent.map((p) => p.freshness_p50), recent.map((p) => p.freshness_p99));
    spark($("chart-lag"), recent.map((p) => p.lag));
    spark($("chart-hr"), recent.map((p) => p.hit_rate));
  } catch (error) {
    text($("flow-status"), `flow metrics: ${error.message}`);
  }
}

let user = null;
let shown = "";

function cell(content, cls) {
  const td = document.createElement("td");
  td.textContent = content;
  if (cls) td.className = cls;
  return td;
}

async function refreshList() {
  if (!user) return;
  try {
    const doc = await api(`/inspect/${encodeURIComponent(user)}?k=10`);
    const tbody = $("rec-list");
    tbody.dataset.updated = doc.updated ?? "";
    text($("rec-source"), doc.source);
    text($("rec-meta"), `updated ${ago(doc.updated)} · newest event used ${ago(doc.event_ts)}`);
    const signature = JSON.stringify([doc.items, doc.scores]);
    if (signature === shown) return;
    const before = new Set([...tbody.querySelectorAll("tr[data-item]")].map((tr) => tr.dataset.item));
    shown = signature;
    if (!doc.items.length) {
      tbody.replaceChildren(Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="4" class="empty">no list yet</td>' }));
      return;
    }
    tbody.replaceChildren(...doc.items.map((item, i) => {
      const tr = document.createElement("tr");
      tr.dataset.item = item;
      if (before.size && !before.has(item)) tr.className = "changed";
      tr.append(cell(i + 1), cell(item), cell(doc.scores[i].toFixed(4)), cell((doc.similar[item] || []).join(", ") || "–", "similar"));
      return tr;
    }));
  } catch (error) {
    text($("rec-meta"), error.message);
  }
}

async function refreshEvents() {
  if (!user) return;
  try {
    const { events } = await api(`/users/${encodeURIComponent(user)}/events?limit=10`);
    const tbody = $("events-list");
    if (!events.length) {
      tbody.replaceChildren(Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="4" class="empty">no recent events</td>' }));
      return;
    }
    tbody.replaceChildren(...events.map(({ kafka_ts, event }) => {
      const tr = document.createElement("tr");
      tr.dataset.item = event.item ?? "";
      tr.append(cell(new Date(kafka_ts * 1000).toLocaleTimeString()), cell(event.item ?? "?"), cell(event.type ?? "view"), cell(event.value ?? ""));
      return tr;
    }));
  } catch (error) {
    text($("events-list"), error.message);
  }
}

$("inspect-form").addEventListener("submit", (e) => {
  e.preventDefault();
  user = $("user-input").value.trim();
  shown = "";
  refreshList();
  refreshEvents();
});

$("send-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("send-result");
  if (!user) { out.textContent = "inspect a user first"; return; }
  const event = { user, item: $("send-item").value.trim(), type: $("send-type").value };
  const value = $("send-value").value.trim();
  if (value) event.value = Number(value);
  try {
    const res = await api("/events", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(event) });
    out.className = "meta";
    out.textContent = res.accepted ? `sent ${event.type} of ${event.item} at ${new Date().toLocaleTimeString()}` : `rejected: ${res.rejected[0].reason}`;
    refreshEvents();
    refreshList();
  } catch (error) {
    out.className = "meta error";
    out.textContent = error.message;
  }
});

pollStats();
setInterval(pollStats, 1000);
setInterval(refreshList, 400);
setInterval(refreshEvents, 3000);
