// A big thread's edges, on a canvas of their own under cytoscape's. At 10,000 edges
// cytoscape's work for them (add, style, bounding boxes, layer textures) cost more than
// that for the nodes; one canvas path per colour draws them all in a few milliseconds.
// They look as cytoscape's haystack edges did: centre to centre, 1 unit wide, under the
// nodes; a node's lineage (all it came from and all that came of it) in orange, the rest
// faded. Node positions are the server's (big threads' nodes cannot be dragged).
"use strict";
(function () {
  const STYLES = { child: ["#999999", false], derived: ["#999999", false], waits: ["#1565c0", true],
                   triggered: ["#ef6c00", false], put: ["#2e7d32", false], get: ["#2e7d32", false] };
  const LINEAGE = ["#ff6f00", false];

  function edgeLayer(cy, box) {
    const canvas = document.createElement("canvas");
    canvas.className = "lwfm-edges";
    box.prepend(canvas);   // before cytoscape's canvases, so under them
    let at = new Map(), edges = [], lit = null, queued = false;   // lit: indexes of lineage edges
    const into = new Map(), outOf = new Map();                    // node id -> edge indexes

    function push(m, k, i) { const l = m.get(k); if (l) l.push(i); else m.set(k, [i]); }
    function set(nodes, all) {   // the thread's nodes (with x, y) and edges
      at = new Map(nodes.map((n) => [n.id, n]));
      edges = all.filter((e) => at.has(e.source) && at.has(e.target));
      into.clear();
      outOf.clear();
      edges.forEach((e, i) => { push(into, e.target, i); push(outOf, e.source, i); });
      lit = null;
      draw();
    }
    function draw() {
      queued = false;
      const w = box.clientWidth, h = box.clientHeight;
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      const ctx = canvas.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const z = cy.zoom(), p = cy.pan();
      ctx.setTransform(z, 0, 0, z, p.x, p.y);
      ctx.lineWidth = 1;
      const groups = new Map();
      edges.forEach((e, i) => {
        const style = lit && lit.has(i) ? LINEAGE : STYLES[e.kind] || STYLES.child;
        const l = groups.get(style);
        if (l) l.push(e); else groups.set(style, [e]);
      });
      for (const [[colour, dashed], list] of groups) {
        ctx.strokeStyle = colour;
        ctx.globalAlpha = lit && colour !== LINEAGE[0] ? 0.3 : 1;
        ctx.setLineDash(dashed ? [6, 3] : []);
        ctx.beginPath();
        for (const e of list) {
          const s = at.get(e.source), t = at.get(e.target);
          ctx.moveTo(s.x, s.y);
          ctx.lineTo(t.x, t.y);
        }
        ctx.stroke();
      }
    }
    function schedule() { if (!queued) { queued = true; requestAnimationFrame(draw); } }
    // Lights up a node's lineage; the ids of its nodes (the node itself among them).
    function highlight(id) {
      const nodes = new Set([id]);
      lit = new Set();
      for (const [links, end] of [[into, "source"], [outOf, "target"]]) {
        const seen = new Set([id]), todo = [id];
        while (todo.length) {
          for (const i of links.get(todo.pop()) || []) {
            lit.add(i);
            const next = edges[i][end];
            if (!seen.has(next)) { seen.add(next); nodes.add(next); todo.push(next); }
          }
        }
      }
      draw();
      return nodes;
    }
    function clear() { lit = null; draw(); }
    cy.on("viewport resize", schedule);
    return { set, draw, highlight, clear };
  }
  window.lwfm.edgeLayer = edgeLayer;
})();
