// Every event of a bus run, in gseq order, once, through sup.stop: one JSON line each.
//   node subscriber.mjs                  the local session (BUS_SESSION, section 1)
//   node subscriber.mjs tcp://HOST:PORT  a supervisor's control address (--listen)
import { Dealer, Subscriber } from "zeromq";
import { decode, encode } from "@msgpack/msgpack";
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";

const TIMEOUT = 5000, QUIET = 1000, WAIT = 30000;  // ms: for a reply; silence before asking hello; for a supervisor
const fail = (why, code = 4) => { console.error(`subscriber: ${why}`); process.exit(code); };
const isDir = (path) => { try { return statSync(path).isDirectory(); } catch { return false; } };
const alive = (pid) => { try { return process.kill(pid, 0); } catch (e) { return e.code === "EPERM"; } };

async function local() {                              // section 1: the session's run directory
  const env = process.env, xdg = env.XDG_RUNTIME_DIR, user = process.getuid?.() ?? env.USERNAME;
  const base = env.BUS_RUNTIME_DIR || (xdg && isDir(xdg) ? `${xdg}/bus` : `${tmpdir()}/bus-${user}`);
  const dir = `${base}/${env.BUS_SESSION || "default"}`;
  if (process.platform !== "win32" && ["", "0"].includes(env.BUS_LOCAL_TCP ?? "")) {
    return [`ipc://${dir}/ctl`, `ipc://${dir}/pub`];  // fixed paths: it may start later
  }
  for (const start = Date.now(); Date.now() - start < WAIT; await new Promise((go) => setTimeout(go, 100))) {
    try {                                             // no ipc: the tcp ports are in supervisor.json (of a live pid)
      const info = JSON.parse(readFileSync(`${dir}/supervisor.json`, "utf8"));
      if (alive(info.pid)) return [info.control[0], info.pub[0]];
    } catch { }
  }
  fail(`no supervisor runs in ${dir} (no supervisor.json of a live one within ${WAIT / 1000}s)`);
}

const address = process.argv[2];
let [control, pubAt] = address ? [address, null] : await local();
const ctl = new Dealer({ sendTimeout: TIMEOUT, receiveTimeout: TIMEOUT, linger: 0 });
ctl.connect(control);
let ids = 0;
async function request(op, args = {}) {               // one at a time, so the next reply is this one's
  let reply, frames;
  try {
    await ctl.send(["", encode({ v: 1, op, id: ++ids, ...args })]);
    [, reply, ...frames] = await ctl.receive();
  } catch (e) { if (e.code === "EAGAIN") fail(`no answer to ${op} from ${control} within ${TIMEOUT / 1000}s`); throw e; }
  const r = decode(reply);
  if (!r.ok) fail(`${op}: ${r.code}: ${r.error}`, 1);
  return [r, frames];
}

if (!pubAt) {                                         // tcp: the pub endpoint at the index of the control one we use
  const [hello] = await request("hello"), port = (e) => e.split(":").at(-1);
  const i = hello.endpoints.control.findIndex((e) => e.startsWith("tcp://") && port(e) === port(address));
  const pub = hello.endpoints.pub.at(i);              // (-1, not found: the last, the --listen one)
  pubAt = pub.replace(/^tcp:\/\/(0\.0\.0\.0|\*|\[::\]):/, `tcp://${new URL(address).hostname}:`);
}
const sub = new Subscriber({ receiveHighWaterMark: 100000, receiveTimeout: QUIET, linger: 0 });
sub.connect(pubAt);
sub.subscribe("");                                    // everything, so a jump in gseq is always a drop

let run = null, next = 1, done = false, lost = false; // next: the gseq expected next
function gone(from, to) { console.error(`subscriber: events ${from}..${to} are no longer held`); lost = true; }
function deliver(ev, blobs) {
  if (done || ev.gseq < next) return;                 // a duplicate
  if (ev.gseq > next) gone(next, ev.gseq - 1);        // (only history skips: what it no longer holds)
  const line = { gseq: ev.gseq, kind: ev.kind, engine: ev.engine ?? "" };
  if (ev.kind === "progress") line.pct = ev.pct ?? (ev.done != null && ev.total ? Math.min(100, 100 * ev.done / ev.total) : null);
  if (blobs.length) line.blobs = blobs.map((b) => ({ size: b.length, sha256: createHash("sha256").update(b).digest("hex") }));
  console.log(JSON.stringify(line));
  next = ev.gseq + 1;
  done = ev.kind === "sup.stop";
}
async function fill(until) {                          // history after next - 1 up to until (null: the end of the run)
  if (until !== null && until < next) return;
  for (let after = next - 1, more = true; more && !done;) {
    const [r, frames] = await request("history", { after, until, run });
    let at = 0;
    for (const n of r.frames) { deliver(decode(frames[at]), frames.slice(at + 1, at + n)); at += n; }
    [after, more] = [r.next, r.more];
    const end = until ?? r.last;
    if (!more && !done && next <= end) { gone(next, end); next = end + 1; }
  }
}
async function ended() {                              // our run is over without its sup.stop for us: fetch its rest
  await fill(null);
  if (!done) fail(`run ${run} ended without sup.stop after gseq ${next - 1} (its supervisor died?)`, 1);
}

const start = Date.now();
while (!done) {
  let frames;
  try { frames = await sub.receive(); } catch (e) {
    if (e.code !== "EAGAIN") throw e;                 // a quiet spell: are we behind? (dropped newest events show no jump)
    if (run === null && Date.now() - start > WAIT) fail(`no supervisor at ${pubAt} within ${WAIT / 1000}s`);
    if (run === null) continue;
    const [hello] = await request("hello");
    await (hello.run === run ? fill(hello.last) : ended());
    continue;
  }
  const [, header, ...blobs] = frames, ev = decode(header);  // (a welcome's topic frame is a subscription prefix)
  if (ev.kind === "welcome") {                        // the first of a run starts us; a later one is a fresh `last`
    if (run === null) { run = ev.run; await fill(ev.last); }
    else await (ev.run === run ? fill(ev.last) : ended());
  } else if (run !== null) {                          // (what came before the first welcome, history brings)
    if (ev.gseq > next) await fill(ev.gseq - 1);      // a jump: the gap first
    deliver(ev, blobs);
  }
}
sub.close();
ctl.close();
process.exitCode = lost ? 1 : 0;
