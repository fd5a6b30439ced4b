// A DAG drawn as SVG: nodes in layers by longest path from the sources, wide
// layers wrapped into rows so a loop of a thousand iterations stays readable, edges
// from each node to those after it. A redraw with the same nodes and edges only
// updates states and labels, so focus and scroll survive live updates. Arrow keys
// move between nodes, Enter selects, and Enter on a selected group opens it.
"use strict";

const GRAPH = { width: 190, height: 46, gapX: 26, gapY: 46, perRow: 8, pad: 16 };

function truncate(text, length) {
  return text.length > length ? text.slice(0, length - 1) + "…" : text;
}

// Layers by longest path; edges to unknown ids are dropped, cycles broken.
function layers(nodes) {
  const ids = new Set(nodes.map((node) => node.id));
  const depth = new Map();
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const visiting = new Set();
  const depthOf = (node) => {
    if (depth.has(node.id)) return depth.get(node.id);
    if (visiting.has(node.id)) return 0;
    visiting.add(node.id);
    let level = 0;
    for (const before of node.after || []) {
      if (ids.has(before) && before !== node.id) level = Math.max(level, depthOf(byId.get(before)) + 1);
    }
    visiting.delete(node.id);
    depth.set(node.id, level);
    return level;
  };
  const result = [];
  for (const node of nodes) {
    const level = depthOf(node);
    while (result.length <= level) result.push([]);
    result[level].push(node);
  }
  return result;
}

function layout(nodes) {
  const positions = new Map();
  let y = GRAPH.pad;
  let widest = 0;
  const rows = [];
  for (const layer of layers(nodes)) {
    for (let start = 0; start < layer.length; start += GRAPH.perRow) {
      const row = layer.slice(start, start + GRAPH.perRow);
      rows.push(row);
      row.forEach((node, index) => {
        positions.set(node.id, { x: GRAPH.pad + index * (GRAPH.width + GRAPH.gapX), y, row: rows.length - 1 });
      });
      widest = Math.max(widest, row.length);
      y += GRAPH.height + GRAPH.gapY;
    }
  }
  const width = GRAPH.pad * 2 + Math.max(1, widest) * (GRAPH.width + GRAPH.gapX) - GRAPH.gapX;
  return { positions, rows, width, height: y - GRAPH.gapY + GRAPH.pad };
}

function structureKey(nodes) {
  return nodes.map((node) => node.id + ":" + (node.after || []).join(",")).join("|");
}

// Draws into `host` (a div). options: selected, onSelect(id), onOpen(id).
function drawGraph(host, nodes, options) {
  const key = structureKey(nodes);
  if (host.graphKey === key && host.graphNodes) {
    updateGraph(host, nodes, options);
    return;
  }
  host.graphKey = key;
  const { positions, rows, width, height } = layout(nodes);
  const svg = h("svg:svg", {
    class: "dag", viewBox: `0 0 ${width} ${height}`, width, height, role: "group",
    "aria-label": `Graph of ${nodes.length} tasks; arrow keys move between them, Enter selects`,
  });
  const edges = h("svg:g", { class: "edges" });
  for (const node of nodes) {
    const to = positions.get(node.id);
    for (const before of node.after || []) {
      const from = positions.get(before);
      if (!from || before === node.id) continue;
      const x1 = from.x + GRAPH.width / 2;
      const y1 = from.y + GRAPH.height;
      const x2 = to.x + GRAPH.width / 2;
      const y2 = to.y;
      const bend = Math.max(20, (y2 - y1) / 2);
      edges.append(h("svg:path", { d: `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`, "data-edge": `${before}>${node.id}` }));
    }
  }
  svg.append(edges);
  const elements = new Map();
  for (const node of nodes) {
    const at = positions.get(node.id);
    const group = h("svg:g", {
      class: "node", tabindex: "0", role: "button", "data-node-id": node.id, transform: `translate(${at.x},${at.y})`,
    });
    group.append(
      h("svg:rect", { width: GRAPH.width, height: GRAPH.height, rx: node.group ? 10 : 5 }),
      h("svg:text", { x: 10, y: 19, class: "label" }),
      h("svg:text", { x: 10, y: 36, class: "sub" }),
      h("svg:title", {}));
    group.addEventListener("click", () => options.onSelect && options.onSelect(node.id));
    group.addEventListener("dblclick", () => host.graphNodes.get(node.id).group && options.onOpen && options.onOpen(node.id));
    group.addEventListener("keydown", (event) => graphKey(host, event, node.id));
    elements.set(node.id, group);
    svg.append(group);
  }
  host.graphRows = rows.map((row) => row.map((node) => node.id));
  host.graphPositions = positions;
  host.graphElements = elements;
  host.replaceChildren(svg);
  updateGraph(host, nodes, options);
}

function updateGraph(host, nodes, options) {
  host.graphNodes = new Map(nodes.map((node) => [node.id, node]));
  host.graphOptions = options;
  for (const node of nodes) {
    const group = host.graphElements.get(node.id);
    if (!group) continue;
    const selected = options.selected === node.id;
    // Only what changed is written: a level of a thousand nodes updates in place.
    const set = (name, text) => {
      if (group.getAttribute(name) !== text) group.setAttribute(name, text);
    };
    set("class", `node ${node.state || "NONE"}${node.group ? " group" : ""}${selected ? " selected" : ""}`);
    set("aria-pressed", selected ? "true" : "false");
    set("aria-label", `${node.label}, ${node.state || "not started"}${node.group ? ", group: Enter twice opens it" : ""}`);
    const [, label, sub, title] = group.childNodes;
    const labelText = truncate(node.label, 24);
    if (label.textContent !== labelText) label.textContent = labelText;
    const subText = truncate(node.sub || "", 30);
    if (sub.textContent !== subText) sub.textContent = subText;
    const titleText = node.label + (node.sub ? " — " + node.sub : "");
    if (title.textContent !== titleText) title.textContent = titleText;
  }
}

function graphKey(host, event, id) {
  const rows = host.graphRows;
  const at = host.graphPositions.get(id);
  const row = rows[at.row];
  const index = row.indexOf(id);
  let target = null;
  if (event.key === "ArrowRight") target = row[index + 1] || (rows[at.row + 1] || [])[0];
  else if (event.key === "ArrowLeft") target = row[index - 1] || (rows[at.row - 1] || []).slice(-1)[0];
  else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const next = rows[at.row + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) target = next[Math.min(index, next.length - 1)];
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    const options = host.graphOptions;
    const node = host.graphNodes.get(id);
    if (options.selected === id && node.group && options.onOpen) options.onOpen(id);
    else if (options.onSelect) options.onSelect(id);
    return;
  }
  if (target) {
    event.preventDefault();
    host.graphElements.get(target).focus();
  }
}
