// Agent Ledger timeline: plain DOM code over the JSON API of `agentledger ui`.
// Everything shown comes from the engine's queries; every state at a position is replayed by the
// server from the log (projections.history), never computed here. User data is only ever set as
// text (textContent), never as HTML.
"use strict";

const PAGE_HALF = 50;
const $ = (id) => document.getElementById(id);
const S = {
  threadId: null, thread: null, logEnd: 0, first: 1, at: null, follow: true,
  page: [], stateReq: 0, pageReq: 0, live: null, liveAfter: 0, newSinceView: 0, threadPages: 1,
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
    list.append(el("li", { class: t.thread_id === S.threadId ? "thread selected" : "thread", "data-thread-id": t.thread_id,
                           onclick: () => openThread(t.thread_id) },
      el("div", {}, el("span", { class: "tid", text: t.thread_id }), " ", status(t.status)),
      el("div", { class: "meta", text: `${t.title || "(untitled)"} · ${t.session_count} session(s) · ${t.project_id}` }),
      fork));
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
  const body = await api(`/api/threads/${encodeURIComponent(threadId)}`);
  const first = await api(`/api/threads/${encodeURIComponent(threadId)}/events?after=0&limit=1`);
  S.threadId = threadId;
  S.thread = body.thread;
  S.logEnd = Math.max(S.logEnd, body.log_end);
  S.first = first.events.length ? first.events[0].position : 1;
  S.follow = at === undefined;
  S.newSinceView = 0;
  $("follow").checked = S.follow;
  $("thread-panel").hidden = false;
  $("thread-id").textContent = threadId;
  const fork = body.thread.forked_from;
  $("fork-info").hidden = !fork;
  if (fork) {
    $("fork-source").textContent = fork.thread_id;
    $("fork-source").dataset.threadId = fork.thread_id;
    $("fork-source").dataset.position = fork.position;
    $("fork-position").textContent = fork.position;
  }
  $("diff-from").value = body.thread.created_position;
  $("diff-to").value = S.logEnd;
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

// -- a position: the replayed state and the page of events around it ------------------------------
async function setPosition(p, { page = true } = {}) {
  p = Math.max(S.first, Math.min(Number(p) || S.logEnd, S.logEnd));
  S.at = p;
  $("position").value = p;
  $("position-input").value = p;
  location.hash = `${S.threadId}@${p}`;
  const req = ++S.stateReq;
  // a fork's history starts with its source's events: before its own creation it did not exist yet
  const loads = [api(`/api/threads/${encodeURIComponent(S.threadId)}/state?at=${p}`, { absentOk: true })];
  if (page) loads.push(loadPageAround(p));
  const [replay] = await Promise.all(loads);
  if (req !== S.stateReq) return;  // a later position was asked for meanwhile
  if (replay) renderState(replay, p); else renderAbsent(p);
  markPage();
}

function renderAbsent(p) {
  $("position-label").textContent = `as of position ${p} · ${S.threadId} did not exist yet` +
    (S.thread.forked_from ? ` (it is forked from ${S.thread.forked_from.thread_id} at position ${S.thread.forked_from.position})` : "");
  $("beyond-note").hidden = true;
  renderTree([]);
  renderSessions([]);
  renderSandboxes([], []);
}

function renderState(r, asked) {
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
  renderSandboxes(t.held_sandboxes, r.sessions);
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

function renderSandboxes(held, sessions) {
  const list = $("sandboxes");
  list.replaceChildren();
  const bindings = new Map(sessions.filter((s) => s.sandbox).map((s) => [s.sandbox.sandbox_id, s.sandbox]));
  for (const h of held) {
    const b = bindings.get(h.sandbox_id);
    const now = el("span", { class: "dim now", text: "" });
    list.append(el("li", { "data-sandbox-id": h.sandbox_id },
      el("span", { class: "sid", text: h.sandbox_id }), " held by ", el("span", { class: "sid", text: h.session_id }),
      b ? el("span", { class: "dim", text: ` (${b.mode}, ${b.shutdown})` }) : null, " ", now));
    api(`/api/sandboxes/${encodeURIComponent(h.sandbox_id)}`).then((r) => {
      now.replaceChildren("now: ", status(r.sandbox.status));
    }).catch(() => { now.textContent = "now: unknown"; });
  }
  if (!held.length) list.append(el("li", { class: "dim", text: "none at this position" }));
}

// -- the timeline: one page of the history, never the whole of it ----------------------------------
async function fetchPage(params) {
  return api(`/api/threads/${encodeURIComponent(S.threadId)}/events?${params}`);
}

async function loadPageAround(p) {
  const req = ++S.pageReq;
  const [older, newer] = await Promise.all([fetchPage(`before=${p + 1}&limit=${PAGE_HALF}`),
                                            fetchPage(`after=${p}&limit=${PAGE_HALF}`)]);
  if (req !== S.pageReq) return;
  showPage([...older.events, ...newer.events]);
}

async function pageBy(kind) {
  const req = ++S.pageReq;
  const lo = S.page.length ? S.page[0].position : 0;
  const hi = S.page.length ? S.page[S.page.length - 1].position : 0;
  const params = { newest: `before=${S.logEnd + 1}&limit=${2 * PAGE_HALF}`, oldest: `after=0&limit=${2 * PAGE_HALF}`,
                   older: `before=${lo}&limit=${2 * PAGE_HALF}`, newer: `after=${hi}&limit=${2 * PAGE_HALF}` }[kind];
  const page = await fetchPage(params);
  if (req !== S.pageReq || !page.events.length) return;
  showPage(page.events);
}

function ownEvent(ev) { return ev.boundary.includes(`.thr.${S.threadId}.`); }

function about(data) {
  const parts = [];
  for (const [k, v] of Object.entries(data)) {
    if (k.endsWith("_id") && typeof v === "string") parts.push(`${k.slice(0, -3)}=${v}`);
  }
  const recipients = data.recipients || (data.recipient ? [data.recipient] : []);
  for (const r of recipients) if (r && r.session_id) parts.push(`to=${r.session_id}`);
  if (data.summary && data.summary.outcome) parts.push(`${data.summary.outcome}: ${data.summary.text}`);
  if (data.forked_from) parts.push(`fork of ${data.forked_from.thread_id}@${data.forked_from.position}`);
  return parts.join(" ");
}

function principal(p) {
  if (p === undefined || p === null) return "—";
  if (typeof p === "string") return p;
  return p.id ? `${p.id}${p.role ? ` (${p.role})` : ""}` : JSON.stringify(p);
}

function when(at) {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? at : d.toISOString().slice(11, 23);
}

function eventRow(ev) {
  const own = ownEvent(ev);
  const source = own ? null : ev.boundary.split(".thr.")[1]?.split(".")[0];
  // a source's event opens the source thread at that position; one of this thread travels to it
  const travel = own ? () => { S.follow = false; $("follow").checked = false; setPosition(ev.position, { page: false }); }
                     : () => openThread(source, ev.position).catch(() => {});
  return el("tr", { class: own ? "event" : "event lineage", "data-position": ev.position, "data-type": ev.type,
                    title: own ? "show the thread as of this event" : `open ${source} at this event`, onclick: travel },
    el("td", { class: "pos", text: ev.position }), el("td", { title: ev.at, text: when(ev.at) }),
    el("td", { class: "type", "data-source": source, text: ev.type }), el("td", { class: "mono", text: ev.actor.id }),
    el("td", { class: "mono principal", text: principal(ev.principal) }), el("td", { class: "mono", text: ev.command }),
    el("td", { class: "mono", title: ev.correlation_id, text: short(ev.correlation_id) }),
    el("td", { class: "mono", title: ev.causation_id || "", text: short(ev.causation_id) }),
    el("td", { class: "wrap", text: about(ev.data) }));
}

function short(id) {
  if (!id) return "—";
  return id.length > 22 ? `${id.slice(0, 10)}…${id.slice(-8)}` : id;
}

function showPage(events) {
  S.page = events;
  const body = $("timeline").tBodies[0];
  body.replaceChildren();
  // newest first; a fork's own events sit above its source's, with the fork point between them
  const rows = [...events].reverse();
  rows.forEach((ev, i) => {
    body.append(eventRow(ev));
    const next = rows[i + 1];
    if (next && ownEvent(ev) && !ownEvent(next) && S.thread.forked_from) {
      const f = S.thread.forked_from;
      body.append(el("tr", { class: "fork-point" }, el("td", { colspan: 9, text: `fork point: ${f.thread_id} at position ${f.position}` })));
    }
  });
  if (!events.length) body.append(el("tr", {}, el("td", { class: "dim", colspan: 9, text: "no events" })));
  $("page-info").textContent = events.length ? `positions ${events[0].position}–${events[events.length - 1].position} of the log (ends at ${S.logEnd})` : "";
  markPage();
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
      });
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

// -- diff ----------------------------------------------------------------------------------------
async function runDiff() {
  const a = Number($("diff-from").value), b = Number($("diff-to").value);
  const d = await api(`/api/threads/${encodeURIComponent(S.threadId)}/diff?from=${a}&to=${b}`);
  $("diff-summary").textContent = `from position ${d.from_position} to ${d.to_position}: ${d.events_between} event(s) of its history`;
  const list = $("diff-list");
  list.replaceChildren();
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
  S.follow = Number(e.target.value) >= S.logEnd;
  $("follow").checked = S.follow;
  $("position-input").value = e.target.value;
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(() => setPosition(e.target.value), 120);
});
$("position-input").addEventListener("change", (e) => {
  S.follow = false; $("follow").checked = false; setPosition(e.target.value);
});
$("latest-btn").addEventListener("click", () => { S.follow = true; $("follow").checked = true; S.newSinceView = 0; setPosition(S.logEnd); });
$("follow").addEventListener("change", (e) => { S.follow = e.target.checked; if (S.follow) setPosition(S.logEnd); });
$("diff-btn").addEventListener("click", () => runDiff().catch(() => {}));
for (const kind of ["newest", "newer", "older", "oldest"]) $(`page-${kind}`).addEventListener("click", () => pageBy(kind).catch(() => {}));
$("fork-source").addEventListener("click", (e) => {
  e.preventDefault();
  openThread(e.target.dataset.threadId, Number(e.target.dataset.position)).catch(() => {});
});

(async () => {
  const threads = await loadThreads();
  const [hashThread, hashAt] = decodeURIComponent(location.hash.slice(1)).split("@");
  const chosen = threads.find((t) => t.thread_id === hashThread) || threads[0];
  if (chosen) await openThread(chosen.thread_id, chosen.thread_id === hashThread && hashAt ? Number(hashAt) : undefined);
  document.body.dataset.ready = "true";
  setInterval(() => loadThreads().catch(() => {}), 10_000);  // threads created elsewhere appear too
})().catch(() => { document.body.dataset.ready = "error"; });
