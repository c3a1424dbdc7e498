// The comms fleet view: renders /api/state, then every `state` event of /api/events.
// Everything shown is text (textContent), never HTML: agent facts and task output are data.
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function pairs(obj) {
  return Object.entries(obj || {}).map(([k, v]) => k + "=" + v).join(", ");
}

function renderAgents(agents) {
  const body = document.querySelector("#agents tbody");
  body.replaceChildren();
  for (const a of agents) {
    const tr = el("tr");
    tr.dataset.agent = a.address;
    tr.append(el("td", a.address), el("td", a.up ? "up" : "down", a.up ? "up" : "down"),
      el("td", a.id), el("td", (a.groups || []).join(", ")), el("td", pairs(a.labels), "kv"),
      el("td", pairs(a.facts), "kv"));
    body.append(tr);
  }
}

function renderDispatches(dispatches, live) {
  const body = document.querySelector("#dispatches tbody");
  body.replaceChildren();
  for (const d of [...dispatches].reverse()) {
    const tr = el("tr");
    tr.dataset.dispatch = d.dispatch;
    const started = new Date(d.started_unix * 1000).toLocaleTimeString();
    tr.append(el("td", d.dispatch + " (" + started + ")"), el("td", (d.argv || []).join(" ")),
      el("td", d.done ? "done" : "running", d.done ? "ok" : ""));
    const targets = el("td");
    for (const r of d.results || []) {
      const line = el("div");
      line.append(el("span", r.agent + ": "), el("span", r.outcome, r.outcome));
      if (r.result) {
        if (r.result.exit_code !== null && r.result.exit_code !== undefined) {
          line.append(el("span", " exit " + r.result.exit_code));
        }
        const out = (r.result.stdout_tail || "") + (r.result.stderr_tail || "");
        if (out) line.append(el("pre", out, "output"));
      }
      targets.append(line);
    }
    // Targets still running: their output so far.
    const done = new Set((d.results || []).map((r) => r.agent));
    for (const [agent, out] of Object.entries((live || {})[d.dispatch] || {})) {
      if (done.has(agent)) continue;
      const line = el("div");
      line.append(el("span", agent + ": "), el("span", "running"), el("pre", out, "output live"));
      targets.append(line);
    }
    tr.append(targets);
    body.append(tr);
  }
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Nodes on a circle, a line per link; each node lists its services.
function renderCluster(map) {
  const box = document.getElementById("cluster");
  if (!map) return;
  box.replaceChildren();
  const nodes = map.nodes || [];
  const w = 640, h = Math.max(220, 120 + nodes.length * 20), r = Math.min(w, h) / 2 - 70;
  const pos = {};
  nodes.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(nodes.length, 1) - Math.PI / 2;
    pos[n] = nodes.length === 1 ? [w / 2, h / 2] : [w / 2 + r * Math.cos(a), h / 2 + r * Math.sin(a)];
  });
  const graph = svg("svg", { id: "cluster-graph", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  for (const [a, b] of map.links || []) {
    if (!pos[a] || !pos[b]) continue;
    graph.append(svg("line", { x1: pos[a][0], y1: pos[a][1], x2: pos[b][0], y2: pos[b][1],
      stroke: "#888", "stroke-width": 2, "data-link": a + "-" + b }));
  }
  for (const n of nodes) {
    const [x, y] = pos[n];
    const here = n === map.node;
    graph.append(svg("circle", { cx: x, cy: y, r: 9, fill: here ? "#1a5fb4" : "#5e5c64" }));
    graph.append(svg("text", { x: x + 13, y: y + 4, "font-size": 13, "data-node": n }, n + (here ? " (this server)" : "")));
  }
  box.append(graph);
  const list = el("table");
  list.id = "cluster-nodes";
  list.append(el("tr"));
  list.firstChild.append(el("th", "node"), el("th", "services"));
  for (const n of nodes) {
    const tr = el("tr");
    tr.dataset.node = n;
    const svcs = (map.services || []).filter((s) => s.startsWith(n + ":")).map((s) => s.slice(n.length + 1));
    tr.append(el("td", n), el("td", svcs.join(", ")));
    list.append(tr);
  }
  box.append(list);
}

function render(state) {
  renderAgents(state.agents || []);
  renderCluster(state.cluster);
  renderDispatches(state.dispatches || [], state.live);
  const up = (state.agents || []).filter((a) => a.up).length;
  document.getElementById("status").textContent =
    "backend " + state.server.backend + " · " + up + " of " + (state.agents || []).length +
    " agents up · " + state.server.running + " dispatches running · live";
}

fetch("/api/state").then((r) => (r.ok ? r.json() : null)).then((s) => s && render(s));
const events = new EventSource("/api/events");
events.addEventListener("state", (e) => render(JSON.parse(e.data)));
events.onerror = () => {
  document.getElementById("status").textContent = "disconnected; retrying…";
};
