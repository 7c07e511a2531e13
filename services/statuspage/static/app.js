// The status page's script: renders the data the server embedded (and later fetches), and applies live updates.
// Every value from the server goes into the page as a text node or an attribute value, never as markup.
"use strict";

const STAGES = ["detected", "copied", "catalogued", "archived", "analysed", "pruned", "failed"];
const ACTIVITY_SHOWN = 25;
const page = document.body.dataset.page;
const content = document.getElementById("content");
let current = JSON.parse(document.getElementById("initial").textContent);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, String(value));
    else node[name] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pad(n) { return String(n).padStart(2, "0"); }

function when(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function say(text, isError) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "message error" : "message";
  box.hidden = !text;
}

function scanLink(id) {
  return el("a", { href: "/scan/" + encodeURIComponent(id), text: id });
}

// A stage mark: in the table its column names the stage, so the chip says where; in a timeline, both.
function chip(mark, withStage) {
  const text = mark.stage === mark.label || !withStage ? mark.label : `${mark.stage} ${mark.label}`;
  return el("span", {
    className: "stage stage-" + mark.stage,
    "data-stage": mark.stage,
    title: [mark.stage, mark.label, mark.at ? when(mark.at) : "", mark.detail].filter(Boolean).join(" · "),
  }, text, el("small", { text: clock(mark.at) }));
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function cells(values) {
  return values.map((v) => (v instanceof Node ? el("td", {}, v) : el("td", { text: v ?? "-" })));
}

function section(title, headers, rows) {
  const parts = [el("h2", { text: title })];
  parts.push(rows.length ? table(headers, rows) : el("p", { className: "empty", text: "none" }));
  return parts;
}

// -- the scans table ------------------------------------------------------------------------------------------

function scanRow(row) {
  const tr = el("tr", { "data-scan": row.scan_id, "data-updated": row.updated_at });
  tr.append(el("td", { className: "mono scan" }, scanLink(row.scan_id)));
  tr.append(el("td", { text: row.beamline }));
  tr.append(el("td", { className: "mono", text: row.scan_path || "-" }));
  for (const stage of STAGES) {
    const marks = row.stages.filter((m) => m.stage === stage);
    const chips = marks.map((m) => chip(m, false));
    tr.append(chips.length ? el("td", {}, ...chips) : el("td", { className: "none", text: "–" }));
  }
  tr.append(el("td", { className: "state", text: row.state }));
  return tr;
}

function renderScans(list) {
  content.replaceChildren();
  const rows = list.scans.map(scanRow);
  const headers = ["scan", "beamline", "path", ...STAGES, "state"];
  const body = el("tbody", { id: "scan-rows" }, ...rows);
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
  content.append(el("table", { id: "scans" }, el("thead", {}, head), body));
  if (!rows.length) content.append(el("p", { className: "empty", text: list.note || "no scans in the ledger yet" }));
  const waiting = el("li", { className: "empty", text: "nothing on the bus since this page opened" });
  content.append(el("h2", { text: "live activity" }), el("ul", { id: "activity", className: "activity" }, waiting));
}

function upsertScan(row) {
  const body = document.getElementById("scan-rows");
  if (!body) return;
  const fresh = scanRow(row);
  const old = [...body.children].find((tr) => tr.dataset.scan === row.scan_id);
  if (old) old.replaceWith(fresh);
  else body.prepend(fresh);
  const sorted = [...body.children].sort((a, b) => (a.dataset.updated < b.dataset.updated ? 1 : -1));
  body.replaceChildren(...sorted.slice(0, current.limit || 50));
  for (const p of content.querySelectorAll("p.empty")) p.remove();
}

function addActivity(note) {
  const list = document.getElementById("activity");
  if (!list) return;
  for (const placeholder of list.querySelectorAll("li.empty")) placeholder.remove();
  const who = note.scan_id ? [" ", scanLink(note.scan_id)] : [];
  list.prepend(el("li", {}, `${clock(note.at)} ${note.subject}: ${note.summary}`, ...who));
  while (list.children.length > ACTIVITY_SHOWN) list.lastChild.remove();
}

// -- one scan ---------------------------------------------------------------------------------------------------

function renderScan(detail) {
  content.replaceChildren();
  const s = detail.summary;
  const facts = [
    ["scan", s.scan_id], ["beamline", s.beamline], ["state", s.state],
    ["source", `${detail.endpoint || "-"}:${s.scan_path || "-"}`], ["detected", when(s.detected_at)],
    ["updated", when(s.updated_at)],
  ];
  if (detail.export_controlled) facts.push(["export", "controlled: stays at the facility"]);
  const dl = el("dl", { className: "kv" });
  for (const [k, v] of facts) dl.append(el("dt", { text: k }), el("dd", { text: v }));
  content.append(dl);
  content.append(el("h2", { text: "timeline" }), el("div", { id: "timeline" }, ...s.stages.map((m) => chip(m, true))));

  const catalog = detail.catalog.map((c) => el("tr", {}, ...cells([
    c.kind, c.url ? el("a", { href: c.url, rel: "noreferrer", text: c.pid }) : c.pid,
  ])));
  content.append(...section("catalog", ["dataset", "pid"], catalog));

  const copies = [];
  for (const c of detail.copies) {
    for (const f of c.files) {
      copies.push(el("tr", {}, ...cells([c.endpoint, c.source_endpoint, when(c.verified_at), f.path, f.size,
        el("span", { className: "mono", text: `${f.algorithm}:${f.checksum}` })])));
    }
  }
  content.append(...section("copies (verified)", ["endpoint", "from", "verified at", "path", "bytes", "checksum"], copies));

  const bundles = detail.bundles.map((b) => el("tr", {}, ...cells([b.endpoint, b.bundle, b.archive_id || "-",
    when(b.verified_at), b.members])));
  content.append(...section("archive bundles", ["endpoint", "bundle", "archive id", "verified", "members"], bundles));

  const holds = detail.holds.map((h) => el("tr", {}, ...cells([h.endpoint, h.check_endpoint, when(h.placed_at),
    when(h.expires_at), h.state, h.last_action])));
  content.append(...section("retention holds", ["endpoint", "check copy", "placed", "expires", "state", "last action"], holds));

  const prunes = detail.prunes.map((p) => el("tr", {}, ...cells([p.endpoint, when(p.pruned_at), p.files.length,
    p.freed_bytes, p.check_endpoint])));
  content.append(...section("prunes", ["endpoint", "pruned at", "files", "bytes freed", "checked copy"], prunes));

  const failures = detail.failures.map((f) => el("tr", {}, ...cells([when(f.at), f.service, f.error_type,
    f.permanent ? "yes" : "no", f.reason])));
  content.append(...section("failures", ["at", "service", "error", "permanent", "reason"], failures));

  const files = detail.files.map((f) => el("tr", {}, ...cells([f.path, f.size, when(new Date(f.mtime * 1000).toISOString())])));
  content.append(...section("files", ["path", "bytes", "modified"], files));

  const ids = Object.entries(detail.external_ids).map(([k, v]) => el("tr", {}, ...cells([k, v])));
  content.append(...section("external ids", ["what", "id"], ids));
  if (detail.warnings.length) {
    content.append(...section("warnings", ["warning"], detail.warnings.map((w) => el("tr", {}, ...cells([w])))));
  }
  const history = detail.history.map((h) => el("tr", {}, ...cells([when(h.at), h.what, h.detail])));
  content.append(...section("history", ["at", "what", "detail"], history));
}

// -- dead letters -------------------------------------------------------------------------------------------------

async function replay(seq, button) {
  button.disabled = true;
  try {
    const answer = await fetch(`/api/deadletters/${encodeURIComponent(seq)}/replay`, {
      method: "POST",
      headers: { "X-Requested-With": "beamflow" },
    });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || answer.statusText);
    say(`dead letter ${seq} replayed: ${body.subject} stored as ${body.stream} message ${body.stream_seq}`);
    button.closest("tr").remove();
  } catch (err) {
    say(`replay of dead letter ${seq} failed: ${err.message}`, true);
    button.disabled = false;
  }
}

function letterRow(d) {
  const button = el("button", { className: "replay", type: "button", text: "Replay", "data-seq": d.seq });
  button.addEventListener("click", () => replay(d.seq, button));
  return el("tr", { "data-seq": d.seq }, ...cells([String(d.seq), when(d.stored_at), d.beamline, d.stage, d.service,
    d.error_type, d.scan_id ? scanLink(d.scan_id) : "-", d.reason]), el("td", {}, button));
}

function renderDeadLetters(list) {
  content.replaceChildren();
  const headers = ["seq", "stored", "beamline", "stage", "service", "error", "scan", "reason", ""];
  const body = el("tbody", { id: "letter-rows" }, ...list.dead_letters.map(letterRow));
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
  content.append(el("table", { id: "deadletters" }, el("thead", {}, head), body));
}

function addDeadLetter(d) {
  const body = document.getElementById("letter-rows");
  if (body && ![...body.children].some((tr) => tr.dataset.seq === String(d.seq))) body.append(letterRow(d));
}

// -- live updates ---------------------------------------------------------------------------------------------------

const renderers = {
  scans: renderScans,
  scan: renderScan,
  deadletters: renderDeadLetters,
  missing: (problem) => say(problem.error, true),
};

async function reload() {
  const where = { scans: "/api/scans", deadletters: "/api/deadletters" }[page] ||
    (page === "scan" && current ? "/api/scans/" + encodeURIComponent(current.summary.scan_id) : null);
  if (!where) return;
  const answer = await fetch(where);
  if (answer.ok) {
    current = await answer.json();
    renderers[page](current);
  }
}

let everOpened = false;
const RETRY_MS = 5000;

function live() {
  const badge = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    badge.textContent = "live";
    badge.className = "live on";
    if (everOpened) reload().catch(() => {});  // a reconnect: catch up on what the gap missed
    everOpened = true;
  });
  source.addEventListener("error", () => {
    badge.textContent = "reconnecting";
    badge.className = "live";
    // The browser retries a dropped stream by itself, but gives up on an error answer (503 while the server
    // has no NATS): then try again ourselves.
    if (source.readyState === EventSource.CLOSED) setTimeout(live, RETRY_MS);
  });
  source.addEventListener("scan", (e) => {
    const row = JSON.parse(e.data);
    if (page === "scans") upsertScan(row);
    else if (page === "scan" && current && current.summary.scan_id === row.scan_id) reload().catch(() => {});
  });
  source.addEventListener("deadletter", (e) => { if (page === "deadletters") addDeadLetter(JSON.parse(e.data)); });
  source.addEventListener("activity", (e) => { if (page === "scans") addActivity(JSON.parse(e.data)); });
}

if (renderers[page] && current) renderers[page](current);
if (page !== "missing") live();
