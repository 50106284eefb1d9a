// The bus dashboard: reads the bridge's feed (server-sent events, docs/WEB.md)
// and draws a card per engine. Text from engines is only ever set as text,
// never parsed as HTML.
"use strict";

const bus = {
  head: {},          // address, run, gseq, ended, connected, note
  supervisor: {},    // the supervisor's status, polled by the bridge
  cards: new Map(),  // engine name -> card fields (as the feed sends them)
  updates: 0,        // feed messages applied (snapshots included)
  snapshots: 0,
  connection: "connecting",
};
window.bus = bus;  // for the curious (and the end-to-end test)

const views = new Map();  // engine name -> {root, parts}
const dirty = new Map();  // engine name -> the fields to redraw (null: all of them)
let headDirty = true;
let frame = 0;

function el(tag, cls, parent) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}

function takeSnapshot(snap) {
  const runChanged = snap.run !== bus.head.run;
  bus.head = headOf(snap);
  bus.supervisor = snap.supervisor || {};
  bus.cards = new Map(snap.engines.map((card) => [card.name, card]));
  bus.updates += 1;
  bus.snapshots += 1;
  if (runChanged) {
    for (const view of views.values()) view.root.remove();
    views.clear();
  }
  for (const name of bus.cards.keys()) dirty.set(name, null);
  headDirty = true;
  schedule();
}

function takeUpdate(update) {
  bus.head = headOf(update);
  if (update.supervisor) bus.supervisor = update.supervisor;
  for (const patch of update.engines) {
    const card = bus.cards.get(patch.name);
    if (card) Object.assign(card, patch);
    else bus.cards.set(patch.name, patch);
    const fields = dirty.get(patch.name);
    if (!card) dirty.set(patch.name, null);
    else if (fields !== null) dirty.set(patch.name, new Set([...(fields || []), ...Object.keys(patch)]));
  }
  bus.updates += 1;
  headDirty = true;
  schedule();
}

function headOf(msg) {
  return {address: msg.address, run: msg.run, gseq: msg.gseq, ended: msg.ended, connected: msg.connected, note: msg.note};
}

function connect() {
  const feed = new EventSource("feed");
  feed.addEventListener("snapshot", (e) => takeSnapshot(JSON.parse(e.data)));
  feed.addEventListener("update", (e) => takeUpdate(JSON.parse(e.data)));
  feed.onopen = () => setConnection("live");
  feed.onerror = () => {
    setConnection("reconnecting");
    if (feed.readyState === EventSource.CLOSED) setTimeout(connect, 2000);  // the browser gave up: try again ourselves
  };
}

function setConnection(what) {
  bus.connection = what;
  headDirty = true;
  schedule();
}

// -- drawing -------------------------------------------------------------------

function draw() {
  frame = 0;
  if (headDirty) drawHead();
  headDirty = false;
  const main = document.getElementById("cards");
  for (const [name, fields] of dirty) {
    const card = bus.cards.get(name);
    if (!card) continue;
    let view = views.get(name);
    if (!view) {
      view = makeView(name);
      views.set(name, view);
      main.appendChild(view.root);
    }
    drawCard(view, card, view.drawn ? fields : null);
    view.drawn = true;
  }
  dirty.clear();
  document.getElementById("empty").hidden = bus.cards.size > 0;
}

function drawHead() {
  const h = bus.head, s = bus.supervisor || {};
  text("address", h.address || "");
  text("run", h.run ? `run ${h.run}` : "");
  text("note", h.note || "");
  let badge = bus.connection;
  if (bus.connection === "live") badge = h.ended ? "run ended" : h.connected ? "live" : "no supervisor";
  const conn = document.getElementById("connection");
  conn.textContent = badge;
  conn.className = "badge " + (badge === "live" ? "good" : badge === "run ended" ? "" : "warn");
  document.getElementById("insecure").hidden = !s.insecure;
  const c = s.counters || {};
  const parts = [];
  if (h.connected && !h.ended) {  // the status is polled: once the supervisor is gone it would be stale
    if (s.uptime != null) parts.push(`up ${duration(s.uptime)}`);
    if (c.rejected) parts.push(`${c.rejected.toLocaleString()} rejected`);
  }
  if (h.gseq) parts.push(`${h.gseq.toLocaleString()} events`);
  text("counters", parts.join(" · "));
  drawQueues(s.queues || {});
  document.title = h.run ? `bus ${badge} · ${bus.cards.size} engines` : "bus";
}

function drawQueues(queues) {  // work queues (docs/PROTOCOL.md section 10), from the polled status
  const node = document.getElementById("queues");
  const names = Object.keys(queues);
  node.hidden = names.length === 0;
  const line = names.map((name) => {
    const q = queues[name];
    return `${name}: ${q.queued.toLocaleString()} queued · ${q.running} running · ${q.done.toLocaleString()} done · ${q.failed} failed · ${q.dead} dead · ${q.rate}/s`;
  }).join("   |   ");
  if (node.textContent !== line) node.textContent = line;
}

function text(id, value) {
  const node = document.getElementById(id);
  if (node.textContent !== value) node.textContent = value;
}

function makeView(name) {
  const root = el("section", "card");
  root.dataset.engine = name;
  const p = {};
  const top = el("div", "top", root);
  p.name = el("h2", "name", top);
  p.name.textContent = name;
  p.state = el("span", "badge state", top);
  p.phase = el("div", "phase", root);
  const bar = el("div", "bar", root);
  p.fill = el("div", "fill", bar);
  p.numbers = el("div", "numbers", root);
  p.detail = el("div", "detail", root);
  p.job = el("div", "job", root);
  p.error = el("div", "error", root);
  p.shot = el("figure", "shot", root);
  p.img = el("img", "", p.shot);
  p.img.alt = "";
  p.caption = el("figcaption", "", p.shot);
  p.img.addEventListener("click", () => openFull(p.img.src, p.caption.textContent));
  p.logs = el("ol", "logs", root);
  p.findingsHead = el("h3", "", root);
  p.findings = el("ul", "findings", root);
  p.result = el("dl", "result", root);
  p.exit = el("div", "exit", root);
  return {root, parts: p};
}

function drawCard(view, c, fields) {
  const p = view.parts;
  const root = view.root;
  const changed = (...names) => fields === null || names.some((n) => fields.has(n));
  if (changed("state", "restarts", "exit")) drawState(p, root, c);
  if (changed("phase", "progress", "rate", "eta")) drawProgress(p, root, c);
  if (changed("error")) {
    p.error.textContent = c.error ? `${c.error.type ? c.error.type + ": " : ""}${c.error.message}${c.error.fatal ? " (fatal)" : ""}` : "";
    p.error.hidden = !c.error;
  }
  if (changed("job", "jobs")) drawJob(p, root, c);
  if (changed("screenshot", "shots_total")) drawShot(p, c);
  if (changed("logs")) drawLogs(p, c);
  if (changed("findings", "findings_total")) drawFindings(p, c);
  if (changed("result")) drawResult(p, root, c);
  if (changed("exit")) {
    p.exit.textContent = c.exit ? (c.exit.code != null ? `exit ${c.exit.code}` : `killed by ${c.exit.signame || c.exit.signal}`) + ` after ${duration(c.exit.runtime)}` : "";
  }
}

function drawState(p, root, c) {
  p.state.textContent = c.state + (c.restarts ? ` (${c.restarts} restarts)` : "");
  p.state.className = "badge state " + ({running: "good", exited: c.exit && c.exit.code === 0 ? "" : "bad", fatal: "bad", unresponsive: "bad", backoff: "warn"}[c.state] || "");
  root.dataset.state = c.state;
}

function drawProgress(p, root, c) {
  const pr = c.progress;
  p.phase.textContent = c.phase || "";
  const pct = pr && pr.pct != null ? Math.max(0, Math.min(100, pr.pct)) : null;
  p.fill.style.width = pct == null ? "0%" : `${pct}%`;
  root.dataset.pct = pct == null ? "" : String(pct);
  root.dataset.done = pr && pr.done != null ? String(pr.done) : "";
  const nums = [];
  if (pct != null) nums.push(`${pct.toFixed(pct < 10 ? 1 : 0)}%`);
  if (pr && pr.done != null) nums.push(pr.total != null ? `${pr.done}/${pr.total}` : `${pr.done}`);
  if (c.rate) nums.push(c.rate.unit === "%" ? `${c.rate.value.toFixed(2)} %/s` : `${c.rate.value.toFixed(c.rate.value < 10 ? 2 : 0)}/s`);
  if (c.eta != null) nums.push(`ETA ${duration(c.eta)}`);
  p.numbers.textContent = nums.join(" · ");
  p.detail.textContent = pr ? pr.detail || "" : "";
}

function drawJob(p, root, c) {  // the job it runs, and how its jobs ended
  const j = c.jobs || {done: 0, failed: 0, lost: 0};
  const ended = j.done + j.failed + j.lost ? ` · jobs: ${j.done} done${j.failed ? `, ${j.failed} failed` : ""}${j.lost ? `, ${j.lost} lost` : ""}` : "";
  p.job.textContent = c.job ? `job ${c.job.id} (${c.job.queue}, attempt ${c.job.attempt})${ended}` : ended.slice(3);
  p.job.hidden = !p.job.textContent;
  root.dataset.job = c.job ? c.job.id : "";
}

function drawShot(p, c) {
  if (c.screenshot) {
    if (p.img.getAttribute("src") !== c.screenshot.url) p.img.src = c.screenshot.url;
    p.caption.textContent = `${c.screenshot.name} · ${kb(c.screenshot.size)} · ${c.shots_total} in all`;
    p.shot.hidden = false;
  } else {
    p.shot.hidden = true;
  }
}

function drawLogs(p, c) {
  p.logs.replaceChildren(...c.logs.map((line) => {
    const li = el("li", `level-${line.level} stream-${line.stream}`);
    li.textContent = line.message;
    li.title = new Date(line.ts * 1000).toLocaleTimeString();
    return li;
  }));
}

function drawFindings(p, c) {
  p.findingsHead.textContent = c.findings_total ? `findings: ${c.findings_total}` : "";
  p.findingsHead.hidden = !c.findings_total;
  p.findings.replaceChildren(...c.findings.slice().reverse().map((f) => {
    const li = el("li");
    li.textContent = pairs(f.data);
    return li;
  }));
}

function drawResult(p, root, c) {
  p.result.hidden = c.result == null;
  if (c.result != null) {
    p.result.replaceChildren(...Object.entries(c.result).flatMap(([k, v]) => {
      const dt = el("dt"), dd = el("dd");
      dt.textContent = k;
      dd.textContent = typeof v === "string" ? v : JSON.stringify(v);
      return [dt, dd];
    }));
  }
  root.dataset.result = c.result == null ? "" : "yes";
}

function pairs(data) {
  return Object.entries(data).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join("  ");
}

function kb(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

function duration(s) {
  if (s == null || !isFinite(s)) return "";
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

function openFull(src, caption) {
  const overlay = document.getElementById("overlay");
  document.getElementById("full").src = src;
  document.getElementById("full-caption").textContent = caption;
  overlay.hidden = false;
}

document.getElementById("overlay").addEventListener("click", (e) => { e.currentTarget.hidden = true; });
document.addEventListener("keydown", (e) => { if (e.key === "Escape") document.getElementById("overlay").hidden = true; });
connect();
