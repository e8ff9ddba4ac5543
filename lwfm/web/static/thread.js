// The thread view: positions come from the server (lwfm/web/graph.py), cytoscape only draws.
"use strict";
(function () {
  const { el, getJSON, live } = window.lwfm;
  const COLORS = { COMPLETE: "#c8e6c9", FAILED: "#ffcdd2", CANCELLED: "#e1bee7", RUNNING: "#fff9c4",
                   FINISHING: "#fff9c4", PENDING: "#b2ebf2", READY: "#b2ebf2" };
  const STYLE = [
    { selector: "node", style: { label: "data(label)", "font-size": 10, "text-valign": "center", "text-halign": "center",
      "min-zoomed-font-size": 7, width: 150, height: 34, shape: "round-rectangle", "background-color": "data(color)",
      "border-width": 1, "border-color": "#555", "text-wrap": "ellipsis", "text-max-width": 140 } },
    { selector: "node[kind = 'data']", style: { shape: "tag", "background-color": "#e3f2fd", width: 150 } },
    { selector: "node[kind = 'future']", style: { "border-style": "dashed", "border-width": 2, "background-color": "#ffffff", "border-color": "#1565c0" } },
    { selector: "node[kind = 'future'][state = 'dead']", style: { "border-color": "#c62828", "background-color": "#ffebee", color: "#c62828" } },
    { selector: ":parent", style: { "background-opacity": 0.05, "background-color": "#5c6bc0", "border-style": "dotted",
      label: "data(label)", "text-valign": "top", "text-halign": "center", "font-size": 12, shape: "round-rectangle" } },
    { selector: "edge", style: { width: 1, "curve-style": "straight", "target-arrow-shape": "triangle", "arrow-scale": 0.7,
      "line-color": "#999", "target-arrow-color": "#999" } },
    { selector: "edge[kind = 'waits']", style: { "line-style": "dashed", "line-color": "#1565c0", "target-arrow-color": "#1565c0" } },
    { selector: "edge[kind = 'triggered']", style: { "line-color": "#ef6c00", "target-arrow-color": "#ef6c00" } },
    { selector: "edge[kind = 'put'], edge[kind = 'get']", style: { "line-color": "#2e7d32", "target-arrow-color": "#2e7d32" } },
    { selector: ".faded", style: { opacity: 0.15 } },
    { selector: ".lineage", style: { "border-width": 3, "border-color": "#ff6f00", "line-color": "#ff6f00", "target-arrow-color": "#ff6f00", opacity: 1 } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": "#000" } },
  ];

  function color(n) { return n.kind === "job" ? (COLORS[n.state] || "#eeeeee") : n.kind === "data" ? "#e3f2fd" : "#ffffff"; }
  function label(n) {
    if (n.kind === "future") return (n.state === "dead" ? "✗ dead: " : "future: ") + n.label;
    if (n.kind === "job") return `${n.label} · ${n.state || "-"}`;
    return n.label.split("/").pop() || n.label;
  }
  function elements(g) {
    const out = [];
    for (const inst of g.instances) out.push({ group: "nodes", data: { id: `instance:${inst}`, label: `from instance ${inst.slice(0, 12)}`, kind: "instance" } });
    for (const n of g.nodes) {
      const data = { id: n.id, kind: n.kind, state: n.state || "", label: label(n), color: color(n), raw: n };
      if (n.instance) data.parent = `instance:${n.instance}`;
      out.push({ group: "nodes", data, position: { x: n.x, y: n.y } });
    }
    g.edges.forEach((e, i) => out.push({ group: "edges", data: { id: `e${i}`, source: e.source, target: e.target, kind: e.kind } }));
    return out;
  }
  function showFacts(n) {
    const aside = document.getElementById("facts");
    const raw = n.data("raw");
    const rows = [["id", raw.id], ["kind", raw.kind], ["label", raw.label], ["state", raw.state], ["site", raw.site],
                  ["instance", raw.instance], ["reason", raw.reason]];
    for (const [k, v] of Object.entries(raw.facts || {})) rows.push([k, typeof v === "object" ? JSON.stringify(v) : v]);
    const dl = el("dl", {});
    for (const [k, v] of rows) if (v !== null && v !== undefined && v !== "") dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    const kids = [el("h2", { text: raw.label }), dl];
    if (raw.kind !== "data") kids.push(el("p", {}, el("a", { href: `/jobs/${encodeURIComponent(raw.id)}`, text: "job details" })));
    aside.replaceChildren(...kids);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const box = document.getElementById("cy");
    const wid = box.dataset.workflow;
    const t0 = performance.now();
    const g = await getJSON(`/api/thread/${encodeURIComponent(wid)}`);
    document.getElementById("thread-name").textContent = g.name;
    document.getElementById("thread-count").textContent = `${g.nodes.length} nodes, ${g.edges.length} edges`;
    const big = g.nodes.length > 2000;
    const cy = cytoscape({ container: box, elements: elements(g), style: STYLE, layout: { name: "preset" },
      minZoom: 0.02, maxZoom: 4, pixelRatio: 1,
      textureOnViewport: big, hideEdgesOnViewport: big, motionBlur: false });
    window.lwfmCy = cy;
    cy.one("render", () => {
      document.body.dataset.drawn = String(cy.nodes().length);
      document.body.dataset.drawnMs = String(Math.round(performance.now() - t0));
    });
    cy.on("tap", "node", (e) => {
      const n = e.target;
      if (n.data("kind") === "instance") return;
      showFacts(n);
      cy.batch(() => {
        cy.elements().removeClass("lineage").addClass("faded");
        n.predecessors().union(n.successors()).union(n).removeClass("faded").addClass("lineage");
      });
    });
    cy.on("tap", (e) => { if (e.target === cy) cy.elements().removeClass("lineage faded"); });
    let timer = null;
    async function refresh() {
      timer = null;
      const g2 = await getJSON(`/api/thread/${encodeURIComponent(wid)}`);
      cy.batch(() => {
        for (const n of g2.nodes) {
          const node = cy.getElementById(n.id);
          if (node.nonempty()) {
            node.data({ kind: n.kind, state: n.state || "", label: label(n), color: color(n), raw: n });
          }
        }
        const have = new Set(cy.nodes().map((n) => n.id()));
        const fresh = elements(g2).filter((e) => e.group === "nodes" ? !have.has(e.data.id) : true);
        if (fresh.some((e) => e.group === "nodes")) { cy.edges().remove(); cy.add(fresh); }
      });
      document.getElementById("thread-count").textContent = `${g2.nodes.length} nodes, ${g2.edges.length} edges`;
    }
    live("change", (d) => {
      if (!timer && d.kinds.some((k) => ["job", "status", "trigger", "data"].includes(k))) timer = setTimeout(refresh, 300);
    });
  });
})();
