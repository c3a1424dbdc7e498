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

function renderDispatches(dispatches) {
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
    tr.append(targets);
    body.append(tr);
  }
}

function render(state) {
  renderAgents(state.agents || []);
  renderDispatches(state.dispatches || []);
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
