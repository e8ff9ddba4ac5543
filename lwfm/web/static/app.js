// lwfm panel: every page fills itself from the JSON API; no inline script (CSP).
"use strict";
(function () {
  const meta = (n) => (document.querySelector(`meta[name="${n}"]`) || {}).content || "";
  const CSRF = meta("lwfm-csrf"), CAN_CANCEL = meta("lwfm-allow-cancel") === "1";
  const PAGE = meta("lwfm-page");
  const ENDED = new Set(["COMPLETE", "FAILED", "CANCELLED"]);
  const $ = (s) => document.querySelector(s);

  function el(tag, attrs, ...kids) {   // text only: user data never becomes markup
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  function td(v) { return el("td", { text: v === null || v === undefined ? "" : String(v) }); }
  function link(href, text) { return el("a", { href, text }); }
  async function getJSON(url) {
    const r = await fetch(url, { headers: { accept: "application/json" } });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  function shortTime(t) { return t ? t.replace("T", " ").slice(0, 19) : ""; }
  function stateCell(s) { return el("td", { class: `state s-${s || "none"}`, text: s || "-" }); }

  // -- live updates (server-sent events) ------------------------------------------------
  const listeners = { jobs: [], change: [] };
  function live(kind, fn) { listeners[kind].push(fn); }
  function connect() {
    const es = new EventSource("/api/events");
    const dot = $("#live");
    es.addEventListener("hello", () => { dot.textContent = "●"; dot.classList.add("on"); });
    es.addEventListener("jobs", (e) => { const d = JSON.parse(e.data); listeners.jobs.forEach((f) => f(d)); });
    es.addEventListener("change", (e) => { const d = JSON.parse(e.data); listeners.change.forEach((f) => f(d)); });
    es.onerror = () => { dot.textContent = "○"; dot.classList.remove("on"); };
  }
  window.lwfm = { el, td, link, getJSON, live, shortTime, CSRF };

  // -- jobs ------------------------------------------------------------------------------
  function jobRow(j) {
    return el("tr", { id: `job-${j.id}`, "data-state": j.state || "" },
      el("td", {}, link(`/jobs/${encodeURIComponent(j.id)}`, j.id.slice(0, 12))), td(j.name),
      stateCell(j.state), td(j.site),
      el("td", {}, j.workflow_id ? link(`/thread/${encodeURIComponent(j.workflow_id)}`, j.workflow_id.slice(0, 8)) : ""),
      td(shortTime(j.created)), td(shortTime(j.ended)), td(j.exit_code));
  }
  function filters() {
    const f = {};
    for (const k of ["workflow", "site", "state"]) { const v = $(`#f-${k}`).value; if (v) f[k] = v; }
    for (const k of ["since", "until"]) { const v = $(`#f-${k}`).value; if (v) f[k] = new Date(v).toISOString(); }
    return f;
  }
  function matches(j, f) {
    if (f.workflow && j.workflow_id !== f.workflow) return false;
    if (f.site && j.site !== f.site) return false;
    if (f.state && j.state !== f.state) return false;
    if (f.since && j.created < f.since) return false;
    if (f.until && j.created >= f.until) return false;
    return true;
  }
  async function jobsPage() {
    const tbody = $("#jobs tbody"), more = $("#more");
    let next = null;
    const [wfs, sites] = await Promise.all([getJSON("/api/workflows"), getJSON("/api/sites")]);
    for (const w of wfs) $("#f-workflow").append(el("option", { value: w.id, text: `${w.name} (${w.id.slice(0, 8)})` }));
    for (const s of sites) $("#f-site").append(el("option", { value: s.name, text: s.name }));
    const params = new URLSearchParams(location.search);
    for (const k of ["workflow", "site", "state"]) if (params.get(k)) $(`#f-${k}`).value = params.get(k);
    async function load(append) {
      const q = new URLSearchParams(filters());
      if (append && next) q.set("after", next);
      const page = await getJSON(`/api/jobs?${q}`);
      const rows = page.jobs.map(jobRow);
      if (append) tbody.append(...rows); else fill(tbody, rows);
      next = page.next;
      more.hidden = !next;
      document.body.dataset.loaded = "1";
    }
    $("#filters").addEventListener("submit", (e) => { e.preventDefault(); load(false); });
    more.addEventListener("click", () => load(true));
    live("jobs", (rows) => {
      const f = filters();
      for (const j of rows) {
        const old = document.getElementById(`job-${j.id}`);
        if (old) old.replaceWith(jobRow(j));
        else if (matches(j, f)) tbody.prepend(jobRow(j));
      }
    });
    await load(false);
  }

  // -- one job ---------------------------------------------------------------------------
  async function jobPage() {
    const id = $("#job-id").textContent;
    const cancel = $("#cancel");
    async function load() {
      const d = await getJSON(`/api/jobs/${encodeURIComponent(id)}`);
      const j = d.job || {};
      $("#job-state").textContent = j.state || (d.started_by ? `future (${d.started_by.status})` : "");
      $("#job-state").dataset.state = j.state || "";
      $("#defn").textContent = JSON.stringify(j.defn, null, 2);
      fill($("#history tbody"), d.history.map((s) => el("tr", {}, td(shortTime(s.time)), stateCell(s.state), td(s.native_state), td(s.info), td(s.exit_code))));
      $("#log").textContent = d.log.text;
      $("#log-note").textContent = d.log.note || "";
      fill($("#data tbody"), d.data.map((x) => el("tr", {}, td(x.id.slice(0, 12)), td(x.direction), td(x.url), td(x.site), td(x.sha256))));
      $("#started-by").textContent = d.started_by ? JSON.stringify(d.started_by, null, 2) : "(submitted directly)";
      fill($("#waiting tbody"), d.waiting.map((t) => el("tr", {}, td(t.id.slice(0, 12)), td(t.kind), td(t.status), el("td", {}, link(`/jobs/${t.job_id}`, t.job_id.slice(0, 12))), td(t.reason))));
      cancel.hidden = !CAN_CANCEL || ENDED.has(j.state);
      document.body.dataset.loaded = "1";
    }
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      const r = await fetch(`/api/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST", headers: { "x-csrf-token": CSRF } });
      const body = await r.json();
      $("#cancel-note").textContent = r.ok ? (body.cancelled ? "cancelled" : "it had already ended") : body.error;
      cancel.disabled = false;
      await load();
    });
    live("jobs", (rows) => { if (rows.some((r) => r.id === id)) load(); });
    await load();
  }

  // -- sites, threads, bundles -----------------------------------------------------------
  async function sitesPage() {
    async function load() {
      const rows = await getJSON("/api/sites");
      fill($("#sites tbody"), rows.map((s) => el("tr", { id: `site-${s.name}` }, td(s.name), td(s.driver), td(s.pillars.join(", ")),
        td(s.auth_current === null ? "-" : s.auth_current ? "yes" : "no"), td(s.compute_types.join(", ")), td(s.problem))));
      document.body.dataset.loaded = "1";
    }
    await load();
  }
  async function threadsPage() {
    const rows = await getJSON("/api/workflows");
    fill($("#workflows tbody"), rows.map((w) => el("tr", {}, el("td", {}, link(`/thread/${encodeURIComponent(w.id)}`, w.id.slice(0, 12))),
      td(w.name), td(w.description), td(shortTime(w.created)), td(w.instance_id.slice(0, 12)))));
    document.body.dataset.loaded = "1";
  }
  async function bundlesPage() {
    async function load() {
      const rows = await getJSON("/api/bundles");
      fill($("#bundles tbody"), rows.map((b) => el("tr", {}, td(b.id.slice(0, 12)), td(b.origin_instance), td(b.file_name),
        td(b.sha256.slice(0, 16)), td(shortTime(b.imported_at)), td(JSON.stringify(b.summary)))));
      document.body.dataset.loaded = "1";
    }
    live("change", (d) => { if (d.kinds.includes("bundle")) load(); });
    await load();
  }
  function sparqlPage() {
    const q = $("#query");
    function links() {
      const enc = encodeURIComponent(q.value);
      $("#dl-csv").href = `/api/sparql?format=csv&query=${enc}`;
      $("#dl-json").href = `/api/sparql?format=json&query=${enc}`;
    }
    q.addEventListener("input", links);
    links();
  }

  const pages = { jobs: jobsPage, job: jobPage, sites: sitesPage, threads: threadsPage, bundles: bundlesPage, sparql: sparqlPage };
  document.addEventListener("DOMContentLoaded", () => {
    if (PAGE !== "sparql" && PAGE !== "api") connect();
    const f = pages[PAGE];
    if (f) Promise.resolve(f()).catch((e) => { $("main").prepend(el("p", { class: "error", role: "alert", text: String(e.message || e) })); });
  });
})();
