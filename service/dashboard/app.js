// ifcflow dashboard: plain JS, no build step. The API key lives in sessionStorage only.
"use strict";

const STATUSES = ["queued", "deferred", "in_progress", "complete", "failed", "aborted"];
const TERMINAL = new Set(["complete", "failed", "aborted"]);
const PAGE = 25;
const VIEWABLE = new Set(["ifcconvert", "ifcclash", "ifctester", "ifcdiff", "ifcvalidate"]);
const state = { key: sessionStorage.getItem("ifcflow-key") || "", offsets: [0], next: null, jobs: new Map(), detail: null, detailJob: null, socket: null, overviewDue: null };
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { "X-API-Key": state.key, ...(options.headers || {}) } });
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  // 403 is also a valid key whose role may not do this (a read key cancelling): say so, stay signed in.
  const roleRefused = res.status === 403 && typeof body === "object" && String(body.detail ?? "").startsWith("this key's role");
  if ((res.status === 401 || res.status === 403) && !roleRefused) { signOut("That key was refused."); throw new Error("auth"); }
  if (!res.ok) throw new Error(typeof body === "object" ? JSON.stringify(body.detail ?? body) : body);
  return body;
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
function duration(job) {
  if (!job.started_at) return "";
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  const s = (end - new Date(job.started_at)) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}
const statusPill = (s, label) => el("span", { class: `status ${s}` }, label ?? s.replace("_", " "));

// A running job's progress as the API streams it ({percent, phase}); an empty cell otherwise.
function progressBar(job) {
  if (job.status !== "in_progress") return "";
  const p = job.progress?.percent ?? 0;
  return el("span", { class: "progress", title: job.progress?.phase ?? "" },
    el("progress", { max: "100", value: String(p) }), ` ${Math.round(p)}%`);
}

// The viewer shows a glb conversion, clashes, IDS failures and diffs on the model.
function viewerLink(job) {
  const glb = (job.result?.output_files || []).some((f) => f.toLowerCase().endsWith(".glb"));
  if (job.status !== "complete" || !VIEWABLE.has(job.operation) || (job.operation === "ifcconvert" && !glb)) return "";
  return el("a", { class: "view", href: `/viewer?job=${encodeURIComponent(job.job_id)}`, onclick: (e) => e.stopPropagation() }, "view 3D");
}

function sparkline(history) {
  const values = history.map((p) => p.queued + p.in_progress + p.deferred);
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 140},${28 - (v / max) * 26}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("viewBox", "0 0 140 28");
  svg.innerHTML = `<polyline fill="none" stroke="#0b63c5" stroke-width="1.5" points="${points}"/>`;
  return svg;
}

async function refreshOverview() {
  const o = await api("/dashboard-api/overview");
  // An admin key sees every project's jobs: the table then says whose each is. A read key changes nothing.
  document.body.classList.toggle("admin", o.caller?.role === "admin");
  document.body.classList.toggle("read-only", o.caller?.role === "read");
  $("#who").textContent = o.caller ? `${o.caller.project} · ${o.caller.role}` : "";
  $("#queues tbody").replaceChildren(...Object.entries(o.queues).map(([q, d]) =>
    el("tr", {}, el("td", {}, q), el("td", {}, String(d.queued)), el("td", {}, String(d.deferred)), el("td", {}, String(d.in_progress)), el("td", {}, sparkline(d.history)))));
  $("#workers tbody").replaceChildren(...(o.workers.length ? o.workers.map((w) =>
    el("tr", {}, el("td", {}, `${w.host} / ${w.pid}`), el("td", {}, w.queue), el("td", { title: new Date(w.started_at).toLocaleString() }, time(w.started_at)),
      el("td", {}, String(w.running)), el("td", {}, String(w.complete ?? "")), el("td", {}, String(w.failed ?? "")), el("td", {}, String(w.retried ?? "")),
      el("td", {}, new Date(w.last_heartbeat).toLocaleTimeString())))
    : [el("tr", {}, el("td", { colspan: "8", class: "error" }, "no live worker"))]));
  $("#services tbody").replaceChildren(...Object.entries(o.services).map(([name, s]) =>
    el("tr", {}, el("td", {}, name), el("td", {}, s ? statusPill(s.healthy ? "complete" : "failed", s.healthy ? "healthy" : "down") : "unknown"),
      el("td", {}, s?.error ?? ""), el("td", {}, s ? new Date(s.checked_at).toLocaleTimeString() : ""))));
  const ops = $("#f-operation");
  if (ops.options.length === 1) for (const op of o.operations) ops.append(el("option", { value: op }, op));
}

function jobRow(job) {
  return el("tr", { "data-id": job.job_id, onclick: () => showDetail(job.job_id) },
    el("td", {}, el("code", {}, job.job_id.slice(0, 12))), el("td", { class: "project-col" }, job.project ?? "default"),
    el("td", {}, job.operation ?? ""), el("td", {}, statusPill(job.status)),
    el("td", {}, time(job.enqueued_at)), el("td", {}, time(job.started_at)), el("td", {}, time(job.finished_at)),
    el("td", { class: "duration" }, duration(job)), el("td", {}, progressBar(job)), el("td", {}, String(job.tries)), el("td", {}, viewerLink(job)));
}

function matchesFilters(job) {
  const s = $("#f-status").value, o = $("#f-operation").value;
  return (!s || job.status === s) && (!o || job.operation === o);
}

async function refreshJobs() {
  const offset = state.offsets[state.offsets.length - 1];
  const params = new URLSearchParams({ limit: PAGE, offset });
  if ($("#f-status").value) params.set("status", $("#f-status").value);
  if ($("#f-operation").value) params.set("operation", $("#f-operation").value);
  const page = await api(`/jobs?${params}`);
  state.jobs = new Map(page.jobs.map((j) => [j.job_id, j]));
  state.next = page.next_offset;
  $("#jobs tbody").replaceChildren(...page.jobs.map(jobRow));
  $("#prev").disabled = state.offsets.length === 1;
  $("#next").disabled = state.next === null;
}

function onJobEvent(job) {
  const row = document.querySelector(`#jobs tr[data-id="${job.job_id}"]`);
  if (row) {
    state.jobs.set(job.job_id, job);
    row.replaceWith(matchesFilters(job) ? jobRow(job) : el("tr"));
  } else if (state.offsets.length === 1 && matchesFilters(job)) {
    state.jobs.set(job.job_id, job);
    $("#jobs tbody").prepend(jobRow(job));
    while ($("#jobs tbody").children.length > PAGE) $("#jobs tbody").lastChild.remove();
  }
  if (state.detail === job.job_id) renderDetail(job);
  scheduleOverview();
}

// Counts come from the same job records as the table: re-read them soon after any job changes
// (at most every 300 ms), not only on the 5 s timer, so the panels and the table agree.
function scheduleOverview() {
  if (state.overviewDue) return;
  state.overviewDue = setTimeout(() => { state.overviewDue = null; refreshOverview().catch(() => {}); }, 300);
}

// Durations of running jobs grow every second, without waiting for an event.
function tick() {
  for (const row of document.querySelectorAll("#jobs tbody tr[data-id]")) {
    const job = state.jobs.get(row.dataset.id);
    if (job && job.status === "in_progress") row.querySelector(".duration").textContent = duration(job);
  }
  if (state.detailJob?.status === "in_progress") $("#d-duration").textContent = duration(state.detailJob);
}

function renderDetail(job) {
  $("#detail").hidden = false;
  $("#d-id").textContent = job.job_id;
  state.detailJob = job;
  $("#d-status").replaceChildren(statusPill(job.status));
  $("#d-progress").replaceChildren(progressBar(job), job.progress?.phase && job.status === "in_progress" ? ` ${job.progress.phase}` : "");
  $("#d-duration").textContent = duration(job);
  $("#d-view").replaceChildren(viewerLink(job));
  $("#d-args").textContent = JSON.stringify(job.arguments, null, 2);
  $("#d-result").textContent = job.result ? JSON.stringify(job.result, null, 2) : "";
  $("#d-error").textContent = job.error ? JSON.stringify(job.error, null, 2) : "";
  $("#d-cancel").disabled = TERMINAL.has(job.status);
  $("#d-requeue").disabled = !(job.status === "failed" || job.status === "aborted");
}

async function showDetail(id) {
  state.detail = id;
  renderDetail(await api(`/jobs/${id}`));
}

async function act(method, path, question) {
  if (!confirm(question)) return;
  try { renderDetail(await api(path, { method })); } catch (e) { if (e.message !== "auth") alert(e.message); }
}

function connectLive() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${proto}://${location.host}/ws/jobs`);
  state.socket = socket;
  // Live from the socket's own open and close: the gateway closes it at once (4401/4403) on a bad key.
  socket.onopen = () => { socket.send(JSON.stringify({ api_key: state.key })); setLive(true); };
  socket.onmessage = (m) => onJobEvent(JSON.parse(m.data));
  socket.onclose = (e) => {
    if (state.socket !== socket) return;
    setLive(false);
    if (e.code === 4401 || e.code === 4403) { signOut("That key was refused."); return; }
    if (state.key) setTimeout(connectLive, 2000);
  };
}

function setLive(on) {
  $("#live").textContent = on ? "live" : "offline";
  $("#live").className = on ? "pill on" : "pill";
}

function signOut(message = "") {
  state.key = ""; sessionStorage.removeItem("ifcflow-key");
  if (state.socket) { const s = state.socket; state.socket = null; s.close(); setLive(false); }
  $("#app").hidden = true; $("#logout").hidden = true; $("#login").hidden = false;
  $("#login-error").textContent = message;
}

async function start() {
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  await Promise.all([refreshOverview(), refreshJobs()]);
  connectLive();
}

for (const s of STATUSES) $("#f-status").append(el("option", { value: s }, s.replace("_", " ")));
$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.key = $("#key").value.trim();
  sessionStorage.setItem("ifcflow-key", state.key);
  start().catch(() => {});
});
$("#logout").addEventListener("click", () => signOut());
$("#f-status").addEventListener("change", () => { state.offsets = [0]; refreshJobs(); });
$("#f-operation").addEventListener("change", () => { state.offsets = [0]; refreshJobs(); });
$("#next").addEventListener("click", () => { state.offsets.push(state.next); refreshJobs(); });
$("#prev").addEventListener("click", () => { state.offsets.pop(); refreshJobs(); });
$("#d-close").addEventListener("click", () => { state.detail = null; $("#detail").hidden = true; });
$("#d-cancel").addEventListener("click", () => act("DELETE", `/jobs/${state.detail}`, "Cancel (or abort) this job?"));
$("#d-requeue").addEventListener("click", () => act("POST", `/jobs/${state.detail}/requeue`, "Run this job again with the same arguments?"));
setInterval(() => { if (state.key) refreshOverview().catch(() => {}); }, 5000);
setInterval(tick, 1000);

if (state.key) start().catch(() => {}); else $("#login").hidden = false;
