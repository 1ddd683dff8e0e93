// Agent Ledger timeline: plain DOM code over the JSON API of `agentledger ui`.
// Everything shown comes from the engine's queries; every state at a position is replayed by the
// server from the log (projections.history), never computed here. User data is only ever set as
// text (textContent), never as HTML.
"use strict";

const PAGE_HALF = 50;
const $ = (id) => document.getElementById(id);
const FILTERS = ["session", "type", "actor", "correlation", "q"];
const S = {
  threadId: null, thread: null, logEnd: 0, first: 1, at: null, follow: true,
  page: [], scan: null, stateReq: 0, pageReq: 0, diffReq: 0, live: null, liveAfter: 0, newSinceView: 0, threadPages: 1,
  replay: null, seen: { types: new Set(["session", "sandbox", "thread", "handoff"]), actors: new Set(), correlations: new Set() },
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function status(value) { return el("span", { class: "status", "data-status": value, text: value }); }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, { absentOk = false } = {}) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: an HTTP-level error text */ }
  if (absentOk && response.status === 404) return null;
  if (!response.ok) {
    const message = body && body.error ? `${body.error.code}: ${body.error.message}` : `${response.status} ${text}`;
    showError(message);
    throw new Error(message);
  }
  showError("");
  return body;
}

const threadPath = (suffix = "") => `/api/threads/${encodeURIComponent(S.threadId)}${suffix}`;

// -- links: #<thread>@<position> opens a thread at a position ------------------------------------
function linkTo(threadId, position) {
  return `#${encodeURIComponent(threadId)}${position === undefined ? "" : "@" + position}`;
}

function parseHash() {
  const [thread, at] = decodeURIComponent(location.hash.slice(1)).split("@");
  return { thread: thread || null, at: at && /^\d+$/.test(at) ? Number(at) : undefined };
}

window.addEventListener("hashchange", () => {
  $("notice").hidden = true;
  const { thread, at } = parseHash();
  if (!thread) return;
  if (thread !== S.threadId) { openThread(thread, at).catch(() => {}); return; }
  if (at === undefined) { setFollow(true); setPosition(S.logEnd).catch(() => {}); }
  else if (at !== S.at) { setFollow(false); setPosition(at).catch(() => {}); }
});

// -- threads -------------------------------------------------------------------------------------
// The list shows S.threadPages pages of the tenant's threads (oldest first); "more threads" adds one.
async function loadThreads() {
  const threads = [];
  let body, after = 0;
  for (let page = 0; page < (S.threadPages || 1); page++) {
    body = await api(`/api/threads?after=${after}`);
    threads.push(...body.threads);
    after = body.next_after;
    if (!body.more) break;
  }
  $("tenant").textContent = body.tenant;
  S.logEnd = Math.max(S.logEnd, body.log_end);
  const list = $("threads");
  list.replaceChildren();
  for (const t of threads) {
    const fork = t.forked_from ? el("div", { class: "meta fork", text: `fork of ${t.forked_from.thread_id} @ ${t.forked_from.position}` }) : null;
    list.append(el("li", { class: t.thread_id === S.threadId ? "thread selected" : "thread", "data-thread-id": t.thread_id },
      el("a", { class: "thread-link", href: linkTo(t.thread_id) },
        el("div", {}, el("span", { class: "tid", text: t.thread_id }), " ", status(t.status)),
        el("div", { class: "meta", text: `${t.title || "(untitled)"} · ${t.session_count} session(s) · ${t.project_id}` }),
        fork)));
  }
  if (!threads.length) list.append(el("li", { class: "dim", text: "no threads" }));
  if (body.more) {
    list.append(el("li", { class: "more", text: "more threads…", onclick: () => {
      S.threadPages = (S.threadPages || 1) + 1;
      loadThreads().catch(() => {});
    } }));
  }
  return threads;
}

function markSelected() {
  for (const li of document.querySelectorAll("#threads li.thread")) {
    li.classList.toggle("selected", li.dataset.threadId === S.threadId);
  }
}

async function openThread(threadId, at) {
  const path = `/api/threads/${encodeURIComponent(threadId)}`;
  const body = await api(path);
  const first = await api(`${path}/events?after=0&limit=1`);
  S.threadId = threadId;
  S.thread = body.thread;
  S.logEnd = Math.max(S.logEnd, body.log_end);
  S.first = first.events.length ? first.events[0].position : 1;
  S.newSinceView = 0;
  setFollow(at === undefined);
  $("thread-panel").hidden = false;
  $("thread-id").textContent = threadId;
  const fork = body.thread.forked_from;
  $("fork-info").hidden = !fork;
  if (fork) {
    $("fork-source").textContent = fork.thread_id;
    $("fork-source").href = linkTo(fork.thread_id, fork.position);
    $("fork-position").textContent = fork.position;
  }
  $("diff-from").value = body.thread.created_position;
  $("diff-summary").textContent = "";
  $("diff-list").replaceChildren();
  markSelected();
  setRange();
  await setPosition(at === undefined ? S.logEnd : at);
  startLive();
}

function setRange() {
  const slider = $("position");
  slider.min = S.first;
  slider.max = Math.max(S.first, S.logEnd);
  $("position-input").min = S.first;
  $("position-input").max = slider.max;
}

function setFollow(on) {
  S.follow = on;
  $("follow").checked = on;
}

// -- a position: the replayed state, the sandboxes then, and the page of events around it ----------
async function setPosition(p, { page = true } = {}) {
  p = Math.max(S.first, Math.min(Number(p) || S.logEnd, S.logEnd));
  S.at = p;
  $("position").value = p;
  $("position-input").value = p;
  history.replaceState(null, "", linkTo(S.threadId, p));  // the address is always a link to what is shown
  $("share-link").value = location.href;
  $("copy-status").textContent = "";
  const req = ++S.stateReq;
  // a fork's history starts with its source's events: before its own creation it did not exist yet
  const loads = [api(threadPath(`/state?at=${p}`), { absentOk: true }),
                 api(threadPath(`/sandboxes?at=${p}`), { absentOk: true })];
  if (page) loads.push(loadPageAround(p));
  const [replay, sandboxes] = await Promise.all(loads);
  if (req !== S.stateReq) return;  // a later position was asked for meanwhile
  if (replay) renderState(replay, p, sandboxes ? sandboxes.sandboxes : []); else renderAbsent(p);
  markPage();
  $("diff-to").value = p;
  runDiff().catch(() => {});
}

function renderAbsent(p) {
  S.replay = null;
  $("position-label").textContent = `as of position ${p} · ${S.threadId} did not exist yet` +
    (S.thread.forked_from ? ` (it is forked from ${S.thread.forked_from.thread_id} at position ${S.thread.forked_from.position})` : "");
  $("beyond-note").hidden = true;
  renderTree([]);
  renderSessions([]);
  renderSandboxes([], null);
}

function renderState(r, asked, sandboxes) {
  S.replay = r;
  const t = r.thread;
  $("thread-status").replaceChildren(status(t.status));
  $("thread-status").dataset.status = t.status;
  $("thread-title").textContent = t.title ? `“${t.title}”` : "";
  $("thread-facts").replaceChildren(
    "project ", el("b", { text: t.project_id }), " · caps depth ", el("b", { text: t.max_delegation_depth }),
    ", width ", el("b", { text: t.max_delegation_width }), " · blocking ", el("b", { text: t.blocking_sessions }),
    " · created at ", el("b", { text: t.created_position }));
  const latest = asked >= S.logEnd;
  $("position-label").textContent =
    `as of position ${asked}${latest ? " (latest)" : ""} · ${r.history_events} event(s) of its history so far · ` +
    `thread last changed at ${t.position}` + (S.newSinceView ? ` · ${S.newSinceView} new event(s) since` : "");
  const beyond = r.log_end !== null && r.at > r.log_end;
  $("beyond-note").hidden = !beyond;
  $("beyond-note").textContent = beyond ? `the log ends at position ${r.log_end}, before ${r.at}` : "";
  renderTree(r.trees);
  renderSessions(r.sessions);
  renderSandboxes(sandboxes, r);
  fillList("sessions-known", r.sessions.map((s) => s.session_id));
}

function renderTree(trees) {
  const root = $("tree");
  root.replaceChildren();
  if (!trees.length) { root.append(el("div", { class: "dim", text: "no sessions at this position" })); return; }
  const build = (nodes) => el("ul", {}, ...nodes.map((n) => el("li", { class: "node", "data-session-id": n.session_id },
    n.edge_kind ? el("span", { class: "edge", "data-edge": `${n.edge_kind} ${n.edge_status}`, text: `${n.edge_kind} · ${n.edge_status}` }) : null,
    el("span", { class: "sid", text: n.session_id }), " ", status(n.status),
    el("span", { class: "owner", text: `${n.owner.id} · depth ${n.depth}` }),
    n.summary ? el("span", { class: "dim", text: ` · ${n.summary.outcome}: ${n.summary.text}` }) : null,
    n.children.length ? build(n.children) : null)));
  root.append(build(trees));
}

function budget(b) {
  const used = `used ${b.used}` + (b.used_by_children ? ` + ${b.used_by_children} by children` : "");
  return b.limit === null ? `unlimited, ${used}` : `${b.remaining} of ${b.limit} left (${used})`;
}

function renderSessions(sessions) {
  const body = $("sessions").tBodies[0];
  body.replaceChildren();
  for (const s of sessions) {
    const sb = s.sandbox ? `${s.sandbox.sandbox_id} (${s.sandbox.mode}${s.sandbox.owned ? ", owned" : ", inherited"})` : "—";
    body.append(el("tr", { "data-session-id": s.session_id },
      el("td", { class: "sid", text: s.session_id }), el("td", {}, status(s.status)),
      el("td", { text: `${s.owner.id} v${s.owner_version}` }), el("td", { text: s.depth }),
      el("td", { class: "sid", text: s.parent_session_id || "—" }),
      el("td", { class: "wrap", text: s.edge_kind ? `${s.edge_kind} ${s.edge_status}${s.failure_mode ? ", " + s.failure_mode : ""}` : "—" }),
      el("td", { class: "mono wrap", text: sb }), el("td", { class: "wrap", text: budget(s.budget) }),
      el("td", { class: "wrap", text: s.summary ? `${s.summary.outcome}: ${s.summary.text}` : "—" })));
  }
  if (!sessions.length) body.append(el("tr", {}, el("td", { class: "dim", colspan: 9, text: "no sessions at this position" })));
}

// Each sandbox the thread's sessions were bound to by the position, as it was then (replayed by the
// server from the sandbox's own events): status, what was last asked of it, requests without an
// outcome yet, and who held it.
function renderSandboxes(sandboxes, replay) {
  const list = $("sandboxes");
  list.replaceChildren();
  const held = new Map((replay ? replay.thread.held_sandboxes : []).map((h) => [h.sandbox_id, h.session_id]));
  const sessions = replay ? replay.sessions : [];
  for (const { sandbox_id: id, sandbox: v } of sandboxes) {
    const bound = sessions.filter((s) => s.sandbox && s.sandbox.sandbox_id === id).map((s) =>
      `${s.session_id} (${s.sandbox.mode}${s.sandbox.shutdown ? ", " + s.sandbox.shutdown : ""})`);
    const holder = held.get(id);
    list.append(el("li", { "data-sandbox-id": id, class: v ? `sandbox ${v.status}` : "sandbox" },
      el("div", {}, el("span", { class: "sid", text: id }), " ",
        v ? status(v.status) : el("span", { class: "dim status-none", text: "not requested yet" }),
        v && v.intent !== (v.status === "creating" ? "running" : v.status) ?
          el("span", { class: "intent", text: ` → ${v.intent} requested` }) : null,
        holder ? el("span", { class: "holder", text: ` · held by ${holder}` }) : null),
      el("div", { class: "meta", text: `bound by ${bound.join(", ") || "—"}` +
        (v && v.pending.length ? ` · pending: ${v.pending.join(", ")}` : "") +
        (v && v.location ? ` · ${v.location}` : "") }),
      v && v.last_error ? el("div", { class: "error-text", text: v.last_error }) : null));
  }
  if (!sandboxes.length) list.append(el("li", { class: "dim", text: "none at this position" }));
}

// -- the timeline: one page of the history (with its sandboxes' events), never the whole of it -----
function filterQuery() {
  const parts = [];
  for (const name of FILTERS) {
    const value = $(`filter-${name}`).value.trim();
    if (value) parts.push(`${name}=${encodeURIComponent(value)}`);
  }
  return parts.length ? "&" + parts.join("&") : "";
}

function filtering() { return filterQuery() !== ""; }

async function fetchPage(params) {
  return api(threadPath(`/events?${params}${filterQuery()}`));
}

async function loadPageAround(p) {
  const req = ++S.pageReq;
  const [older, newer] = await Promise.all([fetchPage(`before=${p + 1}&limit=${PAGE_HALF}`),
                                            fetchPage(`after=${p}&limit=${PAGE_HALF}`)]);
  if (req !== S.pageReq) return;
  showPage([...older.events, ...newer.events], { from: older.scanned_from, to: newer.scanned_to, start: older.start, end: newer.end });
}

async function pageBy(kind) {
  const req = ++S.pageReq;
  const scan = S.scan || { from: S.at, to: S.at };
  const params = { newest: `before=${S.logEnd + 1}&limit=${2 * PAGE_HALF}`, oldest: `after=0&limit=${2 * PAGE_HALF}`,
                   older: `before=${scan.from}&limit=${2 * PAGE_HALF}`, newer: `after=${scan.to}&limit=${2 * PAGE_HALF}` }[kind];
  const page = await fetchPage(params);
  if (req !== S.pageReq) return;
  if (!page.events.length && !filtering()) return;  // nothing further that way: keep the page
  showPage(page.events, { from: page.scanned_from, to: page.scanned_to, start: page.start, end: page.end });
}

// a fork's history starts with its source's (and its sandboxes') events: those before its creation
function lineage(ev) { return S.thread.forked_from && ev.position < S.thread.created_position; }
function kindOf(ev) { return ev.boundary.includes(".sbx.") ? "sandbox" : "thread"; }

// What an event says, field by field, as text (any event type, sandbox ones to come included).
function describe(key, value, ev, prompts) {
  if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) return null;
  if (typeof value === "object" && !Array.isArray(value) && !Object.keys(value).length) return null;
  const part = (text, cls) => el("span", { class: cls || "field", "data-field": key, text });
  switch (key) {
    case "prompt": return part(`prompt “${value}”`, "prompt");
    case "summary": return part(`${value.outcome}: ${value.text}`, "summary");
    case "owner": case "agent": case "previous_owner": return part(`${key}=${value.id}`);
    case "sandbox": return part(`sandbox=${value.sandbox_id} (${value.mode}${value.owned ? "" : ", inherited"}` +
                                `${value.shutdown ? ", " + value.shutdown : ""}${value.source_sandbox_id ? ", from " + value.source_sandbox_id : ""})`);
    case "sandbox_actions": return part(value.map((a) => `${a.action} ${a.sandbox_id} (${a.reason}` +
                                                         `${a.hold_for ? ", for " + a.hold_for : ""})`).join(", "));
    case "recipient": return part(`to=${value.session_id} (${value.actor.id})`);
    case "recipients": return part(`to=${value.map((r) => `${r.session_id} (${r.actor.id})`).join(", ")}`);
    case "error": case "reason": return part(`${key}: ${value}`, key === "error" ? "error-text" : "field");
    case "forked_from":
      if (typeof value === "object") return part(`fork of ${value.thread_id}@${value.position}`);
      break;
    default:
  }
  if (ev.type === "session.input_provided" && key === "session_id") {
    const asked = prompts.get(value);
    return el("span", {}, part(`session=${value}`),
              asked ? el("span", { class: "prompt", text: ` · answers “${asked.prompt}” (${asked.position})` }) : null);
  }
  if (key.endsWith("_id") && typeof value === "string") return part(`${key.slice(0, -3)}=${value}`);
  return part(`${key}=${typeof value === "object" ? JSON.stringify(value) : value}`);
}

function about(ev, prompts) {
  const cell = el("td", { class: "wrap about" });
  const parts = Object.entries(ev.data).filter(([k]) => k !== "type").map(([k, v]) => describe(k, v, ev, prompts)).filter(Boolean);
  parts.forEach((p, i) => { if (i) cell.append(" · "); cell.append(p); });
  return cell;
}

function principal(p) {
  if (p === undefined || p === null) return "—";
  if (typeof p === "string") return p;
  return p.id ? `${p.id}${p.role ? ` (${p.role})` : ""}` : JSON.stringify(p);
}

function when(at) {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? at : d.toISOString().slice(0, 23).replace("T", " ");
}

function short(id) {
  if (!id) return "—";
  return id.length > 22 ? `${id.slice(0, 10)}…${id.slice(-8)}` : id;
}

function eventRow(ev, prompts) {
  const past = lineage(ev);
  const source = past ? S.thread.forked_from.thread_id : null;
  const kind = kindOf(ev);
  // a source's event opens the source thread at that position; one of this thread travels to it
  const travel = past ? () => { location.hash = linkTo(source, ev.position); }
                      : () => { setFollow(false); setPosition(ev.position, { page: false }).catch(() => {}); };
  const toggle = el("button", { type: "button", class: "json-toggle", title: "the stored event", text: "{…}", onclick: (e) => {
    e.stopPropagation();
    const row = e.target.closest("tr");
    const next = row.nextElementSibling;
    if (next && next.classList.contains("json")) { next.remove(); return; }
    row.after(el("tr", { class: "json" }, el("td", { colspan: 7 }, el("pre", { text: JSON.stringify(ev, null, 2) }))));
  } });
  return el("tr", { class: `event ${kind}${past ? " lineage" : ""}`, "data-position": ev.position, "data-type": ev.type,
                    title: past ? `open ${source} at this event` : "show the thread as of this event", onclick: travel },
    el("td", { class: "pos", text: ev.position }), el("td", { class: "time", title: ev.at, text: when(ev.at) }),
    el("td", { class: "type", "data-source": source, "data-kind": kind, text: ev.type }), about(ev, prompts),
    el("td", { class: "mono who" }, el("div", { class: "actor", text: ev.actor.id }),
       el("div", { class: "principal", title: "who sent it, as the broker authenticated it", text: principal(ev.principal) }),
       el("div", { class: "command", title: "the command it records", text: ev.command })),
    el("td", { class: "mono ids" }, el("div", { class: "correlation", title: `correlation ${ev.correlation_id}`, text: short(ev.correlation_id) }),
       ev.causation_id ? el("div", { class: "causation", title: `caused by ${ev.causation_id}`, text: short(ev.causation_id) }) : null),
    el("td", {}, toggle));
}

function showPage(events, scan) {
  S.page = events;
  S.scan = scan;
  const prompts = new Map();  // the last prompt of each session before an event, within the page
  const answered = new Map();
  for (const ev of events) {
    if (ev.type === "session.input_requested") prompts.set(ev.data.session_id, { prompt: ev.data.prompt, position: ev.position });
    if (ev.type === "session.input_provided" && prompts.has(ev.data.session_id)) answered.set(ev.position, prompts.get(ev.data.session_id));
    S.seen.types.add(ev.type);
    S.seen.actors.add(ev.actor.id);
    if (ev.principal && ev.principal.id) S.seen.actors.add(ev.principal.id);
    S.seen.correlations.add(ev.correlation_id);
  }
  const body = $("timeline").tBodies[0];
  body.replaceChildren();
  // newest first; a fork's own events sit above its source's, with the fork point between them
  const rows = [...events].reverse();
  rows.forEach((ev, i) => {
    const asked = answered.get(ev.position);
    body.append(eventRow(ev, asked ? new Map([[ev.data.session_id, asked]]) : new Map()));
    const next = rows[i + 1];
    if (next && !lineage(ev) && lineage(next)) {
      const f = S.thread.forked_from;
      body.append(el("tr", { class: "fork-point" }, el("td", { colspan: 7, text: `fork point: ${f.thread_id} at position ${f.position}` })));
    }
  });
  const filtered = filtering();
  if (!events.length) body.append(el("tr", {}, el("td", { class: "dim", colspan: 7, text: filtered ? "no matching events here" : "no events" })));
  const range = scan ? `positions ${scan.from}–${scan.to}` : "";
  $("page-info").textContent = filtered
    ? `${events.length} matching event(s) in ${range} of the log (ends at ${S.logEnd})`
    : events.length ? `${range} of the log (ends at ${S.logEnd})` : "";
  $("page-older").disabled = !!(scan && scan.start);
  $("page-newer").disabled = !!(scan && scan.end);
  fillList("types-known", [...S.seen.types].sort());
  fillList("actors-known", [...S.seen.actors].sort());
  fillList("correlations-known", [...S.seen.correlations].sort());
  markPage();
}

function fillList(id, values) {
  $(id).replaceChildren(...values.map((v) => el("option", { value: v })));
}

function markPage() {
  let selected = null;
  for (const row of $("timeline").querySelectorAll("tr.event")) {
    const pos = Number(row.dataset.position);
    row.classList.toggle("future", pos > S.at);
    row.classList.remove("selected");
    if (pos <= S.at && (selected === null || pos > Number(selected.dataset.position))) selected = row;
  }
  if (selected) selected.classList.add("selected");
}

// -- export: the events shown, in log order, one stored event per line ------------------------------
function exportShown() {
  const lines = [...S.page].sort((a, b) => a.position - b.position).map((ev) => JSON.stringify(ev) + "\n");
  const blob = new Blob(lines, { type: "application/x-ndjson" });
  const url = URL.createObjectURL(blob);
  const span = S.page.length ? `${S.page[0].position}-${S.page[S.page.length - 1].position}` : "empty";
  const a = el("a", { href: url, download: `${S.threadId}-${span}${filtering() ? "-filtered" : ""}.jsonl` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// -- live: new events as they land ---------------------------------------------------------------
function startLive() {
  if (S.live) S.live.close();
  const threadId = S.threadId;
  S.liveAfter = S.logEnd;
  const source = new EventSource(`/api/threads/${encodeURIComponent(threadId)}/live?after=${S.liveAfter}`);
  S.live = source;
  source.onopen = () => { $("live-status").dataset.state = "on"; $("live-status").textContent = "live"; };
  source.addEventListener("events", (msg) => {
    if (S.threadId !== threadId) return;
    const body = JSON.parse(msg.data);
    const last = body.events[body.events.length - 1].position;
    S.liveAfter = Math.max(S.liveAfter, last);
    S.logEnd = Math.max(S.logEnd, body.log_end, last);
    setRange();
    if (S.follow) {
      S.newSinceView = 0;
      setPosition(S.logEnd).then(() => {
        for (const ev of body.events) $("timeline").querySelector(`tr[data-position="${ev.position}"]`)?.classList.add("new");
      }).catch(() => {});
    } else {
      S.newSinceView += body.events.length;
      $("live-status").textContent = `live · ${S.newSinceView} new`;
    }
    loadThreads().catch(() => {});
  });
  const restart = () => {
    // reconnect from what this page has seen, not from where the first connection started
    source.close();
    $("live-status").dataset.state = "error";
    $("live-status").textContent = "reconnecting";
    setTimeout(() => { if (S.live === source) startLiveFrom(threadId); }, 2000);
  };
  source.addEventListener("failure", restart);
  source.onerror = restart;
}

function startLiveFrom(threadId) {
  if (S.threadId !== threadId) return;
  const end = S.logEnd;
  S.logEnd = S.liveAfter;
  startLive();
  S.logEnd = end;
}

// -- diff: from a chosen position to the one shown (the "to" field follows the position) ------------
async function runDiff() {
  const a = Number($("diff-from").value), b = Number($("diff-to").value);
  const req = ++S.diffReq;
  const list = $("diff-list");
  if (!a || !b) return;
  const d = await api(threadPath(`/diff?from=${a}&to=${b}`), { absentOk: true });
  if (req !== S.diffReq) return;
  list.replaceChildren();
  if (!d) {
    $("diff-summary").textContent = `${S.threadId} did not exist yet at position ${Math.min(a, b)}`;
    return;
  }
  $("diff-summary").textContent = `from position ${d.from_position} to ${d.to_position}: ${d.events_between} event(s) of its history`;
  for (const c of d.thread_changes) list.append(el("li", { class: "changed", "data-kind": "thread", text: `~ thread ${c.field}: ${c.before} → ${c.after}` }));
  for (const s of d.sessions_added) list.append(el("li", { class: "added", "data-session-id": s.session_id, text: `+ ${s.session_id} ${s.status} (${s.owner.id}, depth ${s.depth}${s.parent_session_id ? ", parent " + s.parent_session_id : ""})` }));
  for (const sid of d.sessions_removed) list.append(el("li", { class: "removed", "data-session-id": sid, text: `- ${sid}` }));
  for (const sc of d.session_changes) {
    for (const c of sc.changes) list.append(el("li", { class: "changed", "data-session-id": sc.session_id, "data-field": c.field, text: `~ ${sc.session_id} ${c.field}: ${c.before} → ${c.after}` }));
  }
  for (const h of d.sandboxes_acquired) list.append(el("li", { class: "added", "data-sandbox-id": h.sandbox_id, text: `+ sandbox ${h.sandbox_id} held by ${h.session_id}` }));
  for (const h of d.sandboxes_released) list.append(el("li", { class: "removed", "data-sandbox-id": h.sandbox_id, text: `- sandbox ${h.sandbox_id} released by ${h.session_id}` }));
  if (!list.children.length) list.append(el("li", { class: "dim", text: "no change" }));
}

// -- wiring --------------------------------------------------------------------------------------
let sliderTimer = null;
$("position").addEventListener("input", (e) => {
  setFollow(Number(e.target.value) >= S.logEnd);
  $("position-input").value = e.target.value;
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(() => setPosition(e.target.value).catch(() => {}), 120);
});
$("position-input").addEventListener("change", (e) => { setFollow(false); setPosition(e.target.value).catch(() => {}); });
$("latest-btn").addEventListener("click", () => { setFollow(true); S.newSinceView = 0; setPosition(S.logEnd).catch(() => {}); });
$("follow").addEventListener("change", (e) => { S.follow = e.target.checked; if (S.follow) setPosition(S.logEnd).catch(() => {}); });
$("diff-btn").addEventListener("click", () => runDiff().catch(() => {}));
$("diff-from-here").addEventListener("click", () => { $("diff-from").value = S.at; runDiff().catch(() => {}); });
for (const kind of ["newest", "newer", "older", "oldest"]) $(`page-${kind}`).addEventListener("click", () => pageBy(kind).catch(() => {}));
$("copy-link").addEventListener("click", async () => {
  const field = $("share-link");
  field.value = location.href;
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
    $("copy-status").textContent = "copied";
  } catch (_) {
    $("copy-status").textContent = "selected: copy it with Ctrl+C";  // no clipboard outside a secure context
  }
});
let filterTimer = null;
$("filters").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => loadPageAround(S.at).catch(() => {}), 250);
});
$("filters").addEventListener("submit", (e) => { e.preventDefault(); loadPageAround(S.at).catch(() => {}); });
$("filter-clear").addEventListener("click", () => {
  for (const name of FILTERS) $(`filter-${name}`).value = "";
  loadPageAround(S.at).catch(() => {});
});
$("export").addEventListener("click", exportShown);

(async () => {
  const threads = await loadThreads();
  const { thread, at } = parseHash();
  const first = threads[0] && threads[0].thread_id;
  if (thread) {
    // a link to a thread these credentials cannot read (or that does not exist) says so, then shows the first
    await openThread(thread, at).catch(async (e) => {
      if (!first) throw e;
      const said = $("error").textContent;
      await openThread(first);
      $("notice").textContent = `the link's thread ${thread}: ${said}`;
      $("notice").hidden = false;
    });
  } else if (first) await openThread(first);
  document.body.dataset.ready = "true";
  setInterval(() => loadThreads().catch(() => {}), 10_000);  // threads created elsewhere appear too
})().catch(() => { document.body.dataset.ready = "error"; });
