// The thread view. Positions come from the server (lwfm/web/graph.py): cytoscape only
// draws. The whole thread goes in at once (one cy.add, one style pass, one render): drawing
// a big thread in chunks made cytoscape restyle and redraw everything for each chunk. A
// big thread's edges are drawn by thread_edges.js, under cytoscape's canvas.
"use strict";
(function () {
  const { el, getJSON, live, edgeLayer } = window.lwfm;
  const BIG = 1500;   // nodes from which a thread is drawn the cheap way (see BIG_STYLE)
  const COLORS = { COMPLETE: "#c8e6c9", FAILED: "#ffcdd2", CANCELLED: "#e1bee7", RUNNING: "#fff9c4",
                   FINISHING: "#fff9c4", PENDING: "#b2ebf2", READY: "#b2ebf2" };
  const STYLE = [
    { selector: "node", style: { "font-size": 10, "text-valign": "center", "text-halign": "center",
      "min-zoomed-font-size": 7, width: 150, height: 34, shape: "rectangle", "background-color": "data(color)",
      "border-width": 1, "border-color": "#555", "z-index": 10 } },
    { selector: "node.lbl, node[kind = 'instance'], node[kind = 'future']", style: { label: "data(label)" } },
    { selector: "node[kind = 'data']", style: { shape: "tag", "background-color": "#e3f2fd" } },
    { selector: "node[kind = 'future']", style: { "border-style": "dashed", "border-width": 2, "background-color": "#ffffff", "border-color": "#1565c0" } },
    { selector: "node[kind = 'future'][state = 'dead']", style: { "border-color": "#c62828", "background-color": "#ffebee", color: "#c62828" } },
    { selector: "node[kind = 'instance']", style: { "background-opacity": 0.06, "background-color": "#5c6bc0", "border-style": "dotted",
      width: "data(w)", height: "data(h)", "text-valign": "top", "font-size": 12, "z-index": 0, events: "no" } },
    { selector: "edge", style: { width: 1, "curve-style": "straight", "target-arrow-shape": "triangle", "arrow-scale": 0.7,
      "line-color": "#999", "target-arrow-color": "#999", "z-index": 5 } },
    { selector: "edge[kind = 'waits']", style: { "line-style": "dashed", "line-color": "#1565c0", "target-arrow-color": "#1565c0" } },
    { selector: "edge[kind = 'triggered']", style: { "line-color": "#ef6c00", "target-arrow-color": "#ef6c00" } },
    { selector: "edge[kind = 'put'], edge[kind = 'get']", style: { "line-color": "#2e7d32", "target-arrow-color": "#2e7d32" } },
    { selector: ".faded", style: { opacity: 0.3 } },
    { selector: ".lineage", style: { "border-width": 3, "border-color": "#ff6f00", "line-color": "#ff6f00", "target-arrow-color": "#ff6f00", opacity: 1 } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": "#000" } },
  ];
  // A big thread's style: only what differs from cytoscape's defaults (each property costs
  // every element when its style is first applied: at 10,000 nodes that is most of the
  // time), font settings only where a label is shown, no borders on jobs. No z-index:
  // nodes are drawn in the order added, so the instance boxes (added first) lie behind.
  const BIG_STYLE = [
    { selector: "node", style: { width: 150, height: 34, shape: "rectangle", "background-color": "data(color)" } },
    { selector: "node.lbl, node[kind = 'instance'], node[kind = 'future']", style: { label: "data(label)", "font-size": 10,
      "text-valign": "center", "text-halign": "center", "min-zoomed-font-size": 7 } },
    { selector: "node[kind = 'data']", style: { shape: "tag" } },
    { selector: "node[kind = 'future']", style: { "border-style": "dashed", "border-width": 2, "border-color": "#1565c0" } },
    { selector: "node[kind = 'future'][state = 'dead']", style: { "border-color": "#c62828", "background-color": "#ffebee", color: "#c62828" } },
    { selector: "node[kind = 'instance']", style: { "background-opacity": 0.06, "border-width": 1, "border-style": "dotted",
      width: "data(w)", height: "data(h)", "text-valign": "top", "font-size": 12, events: "no" } },
    { selector: ".faded", style: { opacity: 0.3 } },
    { selector: ".lineage", style: { "border-width": 3, "border-color": "#ff6f00", opacity: 1 } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": "#000" } },
  ];
  const facts = new Map();   // id -> the node as the API gave it (kept out of cytoscape's data)

  function color(n) { return n.kind === "job" ? (COLORS[n.state] || "#eeeeee") : n.kind === "data" ? "#e3f2fd" : "#ffffff"; }
  function label(n) {
    let text = n.kind === "data" ? (n.label.split("/").pop() || n.label) : n.label;
    if (text.length > 24) text = text.slice(0, 23) + "…";
    if (n.kind === "future") return (n.state === "dead" ? "✗ dead: " : "future: ") + text;
    if (n.kind === "job") return `${text} · ${n.state || "-"}`;
    return text;
  }
  function nodeData(n) { facts.set(n.id, n); return { id: n.id, kind: n.kind, state: n.state || "", label: label(n), color: color(n) }; }
  function groupEls(g) {
    return g.groups.map((b) => ({ group: "nodes", data: { id: `instance:${b.instance}`, kind: "instance", w: b.w, h: b.h,
      label: `from instance ${b.instance.slice(0, 12)}`, color: "#5c6bc0" }, position: { x: b.x, y: b.y } }));
  }
  function nodeEls(nodes) { return nodes.map((n) => ({ group: "nodes", data: nodeData(n), position: { x: n.x, y: n.y } })); }
  function edgeEls(edges, have) {
    const out = [];
    for (const e of edges) if (have.has(e.source) && have.has(e.target)) out.push({ group: "edges", data: { source: e.source, target: e.target, kind: e.kind } });
    return out;
  }
  function showFacts(id) {
    const raw = facts.get(id);
    const rows = [["id", raw.id], ["kind", raw.kind], ["label", raw.label], ["state", raw.state], ["site", raw.site],
                  ["instance", raw.instance], ["reason", raw.reason]];
    for (const [k, v] of Object.entries(raw.facts || {})) rows.push([k, typeof v === "object" ? JSON.stringify(v) : v]);
    const dl = el("dl", {});
    for (const [k, v] of rows) if (v !== null && v !== undefined && v !== "") dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    const kids = [el("h2", { text: raw.label }), dl];
    if (raw.kind !== "data") kids.push(el("p", {}, el("a", { href: `/jobs/${encodeURIComponent(raw.id)}`, text: "job details" })));
    document.getElementById("facts").replaceChildren(...kids);
  }
  function rows(g) {   // the API sends columns (smaller, quicker to parse): make objects
    const c = g.nodes, nodes = new Array(c.id.length);
    for (let i = 0; i < nodes.length; i++) {
      nodes[i] = { id: c.id[i], kind: c.kind[i], label: c.label[i], state: c.state[i], site: c.site[i],
                   instance: c.instance[i], reason: c.reason[i], x: c.x[i], y: c.y[i], facts: g.facts[c.id[i]] || {} };
    }
    const e = g.edges, edges = new Array(e.source.length);
    for (let i = 0; i < edges.length; i++) edges[i] = { source: c.id[e.source[i]], target: c.id[e.target[i]], kind: e.kind[i] };
    return { ...g, nodes, edges };
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const box = document.getElementById("cy");
    const t0 = performance.now();
    const url = document.getElementById("thread-data").href;   // preloaded by the page
    const g = rows(await getJSON(url));
    document.getElementById("thread-name").textContent = g.name;
    document.getElementById("thread-count").textContent = `${g.nodes.length} nodes, ${g.edges.length} edges`;
    const big = g.nodes.length > BIG;
    const opts = { container: box, style: big ? BIG_STYLE : STYLE, minZoom: 0.01, maxZoom: 4, pixelRatio: 1,
      textureOnViewport: big, motionBlur: false, autoungrabify: big,
      layout: { name: "preset", fit: false } };   // positions are the server's
    // Created empty, then one add in a batch: elements given to the constructor go through
    // its layout, which sets every position once more.
    const cy = cytoscape(opts);
    window.lwfmCy = cy;
    const have = new Set(g.nodes.map((n) => n.id));
    cy.batch(() => cy.add(groupEls(g).concat(nodeEls(g.nodes), big ? [] : edgeEls(g.edges, have))));
    // The whole thread in view. Fitting measures every element's bounding box now, before
    // the first render: measured during it (for its layer textures), they would be marked
    // changed, and the next frame (the container's first resize event) would throw those
    // layers away and draw every element again.
    cy.fit(undefined, 30);
    const lines = big ? edgeLayer(cy, box) : null;
    if (lines) lines.set(g.nodes, g.edges);   // drawn now, for the viewport just fitted
    // Labels only where they can be read: measuring 10,000 labels that are drawn too
    // small to see is most of what a first frame would cost.
    const labels = () => {
      const show = cy.zoom() >= 0.45;
      cy.batch(() => {
        if (!show) { cy.nodes(".lbl").removeClass("lbl"); return; }
        const ext = cy.extent();
        cy.nodes().forEach((n) => {
          const p = n.position();
          n.toggleClass("lbl", p.x >= ext.x1 - 100 && p.x <= ext.x2 + 100 && p.y >= ext.y1 - 40 && p.y <= ext.y2 + 40);
        });
      });
    };
    let lblTimer = null;
    cy.on("viewport", () => { clearTimeout(lblTimer); lblTimer = setTimeout(labels, 120); });
    labels();
    // Every node is in before the first render, so that render draws them all: the page is
    // marked drawn as it ends (cytoscape's render event comes once the canvas is drawn; the
    // frame is committed before any other task runs). Waiting a frame more only delayed the
    // mark behind whatever cytoscape did next.
    await new Promise((r) => cy.one("render", r));
    const ms = String(Math.round(performance.now() - t0));
    document.body.dataset.firstPaintMs = ms;
    document.body.dataset.drawn = String(cy.nodes().length);
    document.body.dataset.drawnMs = ms;

    cy.on("tap", "node", (e) => {
      const n = e.target;
      if (n.data("kind") === "instance") return;
      showFacts(n.id());
      cy.batch(() => {
        cy.elements().removeClass("lineage").addClass("faded");
        const up = lines ? cy.collection([...lines.highlight(n.id())].map((id) => cy.getElementById(id)))
          : n.predecessors().union(n.successors()).union(n);
        up.removeClass("faded").addClass("lineage");
      });
    });
    cy.on("tap", (e) => {
      if (e.target !== cy) return;
      cy.elements().removeClass("lineage faded");
      if (lines) lines.clear();
    });
    let timer = null;
    async function refresh() {
      timer = null;
      const g2 = rows(await getJSON(url));
      const known = new Set(cy.nodes().map((n) => n.id()));
      const added = g2.nodes.filter((n) => !known.has(n.id));
      cy.batch(() => {
        for (const n of g2.nodes) if (known.has(n.id)) cy.getElementById(n.id).data(nodeData(n));
        if (added.length) {
          cy.edges().remove();
          cy.add(nodeEls(added));
          if (!lines) cy.add(edgeEls(g2.edges, new Set(g2.nodes.map((n) => n.id))));
        }
      });
      if (lines) {   // to where the nodes are drawn (a node already there keeps its place)
        const at = cy.nodes("[kind != 'instance']").map((n) => ({ id: n.id(), x: n.position("x"), y: n.position("y") }));
        lines.set(at, g2.edges);
      }
      document.getElementById("thread-count").textContent = `${g2.nodes.length} nodes, ${g2.edges.length} edges`;
    }
    live("change", (d) => {
      if (!timer && d.kinds.some((k) => ["job", "status", "trigger", "data"].includes(k))) timer = setTimeout(refresh, 300);
    });
  });
})();
