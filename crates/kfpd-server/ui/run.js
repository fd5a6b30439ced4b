// The run page: the run's facts and actions, then its tasks as a graph (one DAG
// level at a time, groups open on Enter or double-click), a timeline or a table,
// and a side panel with the selected task's record, log and artifacts. The page
// holds one server-sent event stream (GET …/runs/{id}/events) that delivers the run
// and its nodes whenever they change and ends when the run does; nothing is
// fetched while nothing changes.
"use strict";

const GROUP_KINDS = new Set(["ROOT", "DAG", "LOOP", "LOOP_ITERATION", "CONDITION", "CONDITION_BRANCH", "EXIT_HANDLER"]);
const KIND_LABELS = {
  ROOT: "pipeline", DAG: "sub-pipeline", RUNTIME: "container", IMPORTER: "importer", LOOP: "loop",
  LOOP_ITERATION: "iteration", CONDITION: "condition", CONDITION_BRANCH: "branch", EXIT_HANDLER: "exit handler",
};
const RECONNECT_MS = 1000;
const LOG_LINES_SHOWN = 5000;

function nodeLabel(node) {
  if (node.kind === "LOOP_ITERATION") return `${node.display_name || node.name}`;
  return node.display_name || node.name || node.task_id;
}

function nodeSub(node) {
  const kind = KIND_LABELS[node.kind] || node.kind;
  if (node.cached_from) return `${kind} · cached`;
  const took = duration(node.started_at, node.finished_at);
  return took ? `${kind} · ${took}` : kind;
}

// Children by parent id, each list in creation order.
function childrenOf(nodes) {
  const ids = new Set(nodes.map((node) => node.task_id));
  const children = new Map();
  for (const node of nodes) {
    const parent = ids.has(node.parent_task_id) ? node.parent_task_id : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(node);
  }
  const order = (a, b) => (a.iteration_index ?? -1) - (b.iteration_index ?? -1)
    || String(a.created_at).localeCompare(String(b.created_at))
    || nodeLabel(a).localeCompare(nodeLabel(b));
  for (const list of children.values()) list.sort(order);
  return children;
}

// Tasks in tree order with their depth (a parent cycle in bad data hides nothing).
function treeOrder(nodes) {
  const children = childrenOf(nodes);
  const order = [];
  const seen = new Set();
  const visit = (parent, level) => {
    for (const node of children.get(parent) || []) {
      if (seen.has(node.task_id)) continue;
      seen.add(node.task_id);
      order.push([node, level]);
      visit(node.task_id, level + 1);
    }
  };
  visit("", 0);
  for (const node of nodes) if (!seen.has(node.task_id)) order.push([node, 0]);
  return order;
}

class RunPage {
  constructor(id, query) {
    this.id = id;
    this.run = null;
    this.nodes = [];
    this.byId = new Map();
    this.scope = query.scope || "";
    this.selected = query.task || "";
    this.view = query.view || "graph";
    this.tab = query.tab || "overview";
    this.controller = new AbortController();
    this.detail = null;
    this.detailKey = "";
    this.log = null;
    cleanups.push(() => this.stop());
  }

  stop() {
    this.controller.abort();
    if (this.log) this.log.controller.abort();
  }

  // Keeps the fragment in step without a navigation (no hashchange, no reload).
  remember() {
    const query = { scope: this.scope, task: this.selected, view: this.view === "graph" ? "" : this.view, tab: this.tab === "overview" ? "" : this.tab };
    history.replaceState(null, "", `#/runs/details/${enc(this.id)}` + queryString(query));
  }

  async start() {
    render(h("div", { class: "loading" }, "Loading run…"));
    const url = `${API}/runs/${enc(this.id)}/events`;
    for (;;) {
      try {
        await readEvents(url, this.controller.signal, (name, data) => this.onEvent(name, data));
      } catch (error) {
        if (this.controller.signal.aborted) return;
        if (!this.run || (error instanceof ApiError && error.status === 404)) {
          showError(error, "Run " + this.id);
          return;
        }
        this.status(`Connection lost (${error.message}); reconnecting.`);
      }
      if (this.controller.signal.aborted || this.gone) return;
      if (this.run && TERMINAL.has(this.run.state)) return;
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
      if (this.controller.signal.aborted) return;
    }
  }

  status(text) {
    const note = document.getElementById("refresh-error");
    if (note) note.textContent = text;
  }

  onEvent(name, data) {
    if (name === "gone") {
      this.gone = true;
      showError(new ApiError(404, data), "Run " + this.id);
      return;
    }
    if (name !== "run" && name !== "update") return;
    const view = JSON.parse(data);
    const first = !this.run;
    this.run = view.run;
    if (name === "run") {
      this.byId = new Map((view.nodes || []).map((node) => [node.task_id, node]));
    } else {
      // Only the nodes that are new or changed; the rest stay as they were.
      for (const node of view.nodes || []) this.byId.set(node.task_id, node);
      for (const id of view.removed || []) this.byId.delete(id);
    }
    this.nodes = [...this.byId.values()];
    this.children = childrenOf(this.nodes);
    if (first) this.renderPage();
    else this.update();
  }

  root() {
    return (this.children.get("") || [])[0];
  }

  renderPage() {
    const run = this.run;
    const config = run.runtime_config || {};
    this.header = h("div", { id: "run-header" });
    this.actions = h("div", { class: "actions", role: "toolbar", "aria-label": "Run actions" });
    this.factsCard = h("div", { class: "card" });
    this.errorSlot = h("div", {});
    this.viewHost = h("div", { class: "run-view" });
    this.panel = h("aside", { class: "panel", id: "task-panel", "aria-label": "Selected task", hidden: true });
    const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Task views" },
      [["graph", "Graph"], ["timeline", "Timeline"], ["tasks", "Tasks"]].map(([view, label]) =>
        h("button", { role: "tab", id: `view-${view}`, "aria-selected": this.view === view ? "true" : "false",
          onclick: () => { this.view = view; this.remember(); this.renderTabs(tabs); this.renderView(); } }, label)));
    this.tabsNode = tabs;
    render(this.header, this.actions, this.factsCard, this.errorSlot,
      h("h2", {}, "Parameters"),
      table([["Name"], ["Value"]], parameterRows(config.parameters), "No parameters."),
      h("h2", { id: "tasks-heading" }, "Tasks"),
      tabs,
      h("div", { class: "run-body" }, this.viewHost, this.panel));
    this.update();
    markRendered();
  }

  renderTabs(tabs) {
    for (const tab of tabs.children) tab.setAttribute("aria-selected", tab.id === `view-${this.view}` ? "true" : "false");
  }

  update() {
    const run = this.run;
    const live = !TERMINAL.has(run.state);
    this.header.replaceChildren(h("h1", {},
      h("span", { id: "run-name" }, run.display_name || run.run_id), state(run.state),
      live ? h("span", { class: "live" }, "● live") : null,
      h("span", { class: "live", id: "refresh-error", role: "status" })));
    this.actions.replaceChildren(...runActions(run, () => route()));
    this.factsCard.replaceChildren(facts([
      ["Run ID", run.run_id, "mono"],
      ["Experiment", run.experiment_id ? h("a", { href: experimentHref(run.experiment_id) }, run.experiment_id) : ""],
      ["Pipeline version", versionLink(run.pipeline_version_reference) || "inline spec"],
      run.recurring_run_id ? ["Recurring run", h("a", { href: recurringHref(run.recurring_run_id) }, run.recurring_run_id)] : null,
      ["Created", time(run.created_at)],
      ["Finished", time(run.finished_at)],
      ["Duration", duration(run.scheduled_at || run.created_at, run.finished_at)],
      run.description ? ["Description", run.description] : null,
      run.storage_state === "ARCHIVED" ? ["Storage", "archived"] : null,
    ]));
    this.errorSlot.replaceChildren(run.error && run.error.message
      ? h("div", { class: "error", role: "alert" }, run.error.message) : "");
    document.getElementById("tasks-heading").textContent = `Tasks (${this.nodes.length})`;
    this.renderView();
    this.renderPanel();
  }

  renderView() {
    if (!this.nodes.length) {
      const live = !TERMINAL.has(this.run.state);
      this.viewHost.replaceChildren(h("div", { class: "empty card" }, live ? "No tasks have started yet." : "This run has no tasks."));
      return;
    }
    if (this.view === "timeline") this.renderTimeline();
    else if (this.view === "tasks") this.renderTable();
    else this.renderGraph();
  }

  select(id) {
    this.selected = this.selected === id ? "" : id;
    if (this.selected && this.tab === "logs" && !this.hasLog(this.byId.get(id))) this.tab = "overview";
    this.remember();
    this.renderView();
    this.renderPanel();
  }

  open(id) {
    this.scope = id;
    this.remember();
    this.renderView();
    const first = this.viewHost.querySelector("g.node");
    if (first) first.focus();
  }

  renderGraph() {
    const root = this.root();
    let scope = this.byId.get(this.scope) || root;
    if (!scope) return;
    const path = [];
    for (let at = scope; at; at = this.byId.get(at.parent_task_id)) {
      path.unshift(at);
      if (path.length > 64) break;
    }
    const crumbs = h("nav", { class: "crumbs", "aria-label": "Graph level" }, path.map((node, index) => [
      index ? " › " : "",
      index === path.length - 1
        ? h("span", { "aria-current": "location" }, nodeLabel(node))
        : h("a", { href: "#", onclick: (event) => { event.preventDefault(); this.open(node.task_id); } }, nodeLabel(node)),
    ]));
    const level = (this.children.get(scope.task_id) || []).map((node) => ({
      id: node.task_id, label: nodeLabel(node), sub: nodeSub(node), state: node.state,
      after: node.after || [], group: GROUP_KINDS.has(node.kind),
    }));
    if (!this.graphHost || !this.viewHost.contains(this.graphHost) || this.graphScope !== scope.task_id) {
      this.graphHost = h("div", { class: "graph", id: "graph" });
      this.graphScope = scope.task_id;
      this.viewHost.replaceChildren(crumbs, this.graphHost);
    } else {
      this.viewHost.firstChild.replaceWith(crumbs);
    }
    if (!level.length) {
      this.graphHost.graphKey = "";
      this.graphHost.replaceChildren(h("div", { class: "empty" }, "No tasks in this group yet."));
      return;
    }
    drawGraph(this.graphHost, level, {
      selected: this.selected, onSelect: (id) => this.select(id), onOpen: (id) => this.open(id),
    });
  }

  // The view's scrolling frame, kept across live updates so the scroll position
  // and the rows drawn survive them.
  frame(kind, make) {
    if (!this.frames) this.frames = {};
    let frame = this.frames[kind];
    if (!frame || !this.viewHost.contains(frame.node)) {
      frame = make();
      this.frames[kind] = frame;
      this.viewHost.replaceChildren(frame.node);
    }
    return frame;
  }

  renderTimeline() {
    const timed = treeOrder(this.nodes).filter(([node]) => validDate(node.started_at) && node.kind !== "ROOT");
    if (!timed.length) {
      this.frames = null;
      this.viewHost.replaceChildren(h("div", { class: "empty card" }, "No task has started yet."));
      return;
    }
    const now = Date.now();
    let from = Infinity;
    let to = -Infinity;
    const bars = timed.map(([node, level]) => {
      const start = validDate(node.started_at).getTime();
      const end = (validDate(node.finished_at) || new Date(now)).getTime();
      from = Math.min(from, start);
      to = Math.max(to, end);
      return { node, level, start, end };
    });
    const span = Math.max(1000, to - from);
    const frame = this.frame("timeline", () => {
      const axis = h("div", { class: "gantt-axis" });
      const rows = h("div", { class: "gantt-rows" });
      const node = h("div", { class: "gantt", id: "timeline", tabindex: "0", "aria-label": "Timeline of the tasks" }, axis, rows);
      return { node, axis, windowed: new Windowed(node, rows, (px) => h("div", { class: "spacer", style: `height:${px}px` })) };
    });
    frame.axis.replaceChildren(h("span", {}, new Date(from).toLocaleTimeString()), h("span", {}, `+${seconds(span / 1000)}`));
    frame.windowed.set(bars, ({ node, level, start, end }) => {
      const left = ((start - from) / span) * 100;
      const width = Math.max(0.4, ((end - start) / span) * 100);
      return h("div", { class: "gantt-row" + (this.selected === node.task_id ? " selected" : ""), "data-task-id": node.task_id, "data-row-key": node.task_id },
        h("button", { class: "gantt-label", style: `padding-left:${level * 0.8}rem`, onclick: () => this.select(node.task_id) }, nodeLabel(node)),
        h("div", { class: "gantt-track" },
          h("div", { class: `gantt-bar ${node.state}${GROUP_KINDS.has(node.kind) ? " group" : ""}`, style: `left:${left}%;width:${width}%`,
            title: `${nodeLabel(node)}: ${duration(node.started_at, node.finished_at)}` })));
    });
  }

  renderTable() {
    const frame = this.frame("tasks", () => {
      const body = h("tbody", {});
      const headers = [["Task"], ["State"], ["Kind", "wide"], ["Started", "wide"], ["Duration", "wide"], ["Error", "wide"]];
      const wrap = h("div", { class: "table-wrap scroll", tabindex: "0", "aria-label": "Tasks" },
        h("table", { class: "rows-fixed" },
          h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", { class: cls, scope: "col" }, label)))),
          body));
      return { node: h("div", { id: "tasks" }, wrap),
        windowed: new Windowed(wrap, body, (px) => h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: "6", style: `height:${px}px` }))) };
    });
    frame.windowed.set(treeOrder(this.nodes), ([node, level]) => h("tr", {
      "data-task-id": node.task_id, "data-row-key": node.task_id, class: this.selected === node.task_id ? "selected" : "",
    },
    h("td", { title: nodeLabel(node) }, h("span", { class: "indent", style: `padding-left:${level * 1.2}rem` },
      h("a", { href: "#", onclick: (event) => { event.preventDefault(); this.select(node.task_id); } }, nodeLabel(node)))),
    h("td", {}, state(node.state)),
    h("td", { class: "wide" }, KIND_LABELS[node.kind] || node.kind),
    h("td", { class: "wide" }, time(node.started_at)),
    h("td", { class: "wide" }, node.cached_from ? "cached" : duration(node.started_at, node.finished_at)),
    h("td", { class: "wide", title: node.error || "" }, node.error || "")));
  }

  hasLog(node) {
    return node && node.kind === "RUNTIME" && !node.cached_from && node.state !== "SKIPPED";
  }

  renderPanel() {
    const node = this.byId.get(this.selected);
    if (!node) {
      this.panel.hidden = true;
      this.panel.replaceChildren();
      return;
    }
    this.panel.hidden = false;
    const key = `${node.task_id}:${node.state}:${node.finished_at || ""}`;
    if (this.detailKey !== key) {
      this.detailKey = key;
      this.loadDetail(node, key);
    }
    const tabs = [["overview", "Overview"], ["io", "Inputs & outputs"]];
    if (this.hasLog(node)) tabs.push(["logs", "Log"]);
    tabs.push(["artifacts", "Artifacts"]);
    if (!tabs.some(([tab]) => tab === this.tab)) this.tab = "overview";
    if (!this.panelBody || this.panelNode !== node.task_id || this.panelTab !== this.tab) {
      this.panelNode = node.task_id;
      this.panelTab = this.tab;
      this.panelBody = h("div", { class: "panel-body", role: "tabpanel", id: "panel-body" });
      this.panelHead = h("div", { class: "panel-head" });
      this.panelTabs = h("div", { class: "tabs small", role: "tablist", "aria-label": "Task details" },
        tabs.map(([tab, label]) => h("button", { role: "tab", id: `tab-${tab}`, "aria-selected": this.tab === tab ? "true" : "false",
          onclick: () => { this.tab = tab; this.remember(); this.renderPanel(); } }, label)));
      this.panel.replaceChildren(this.panelHead, this.panelTabs, this.panelBody);
      this.renderPanelBody(node, true);
    } else {
      this.renderPanelBody(node, false);
    }
    this.panelHead.replaceChildren(
      h("h3", { id: "panel-title" }, nodeLabel(node)), state(node.state),
      button("×", () => this.select(node.task_id), { class: "close", "aria-label": "Close the task panel" }));
  }

  async loadDetail(node, key) {
    try {
      const detail = await api(`/runs/${enc(this.id)}/nodes/${enc(node.task_id)}`);
      if (this.detailKey !== key) return;
      this.detail = detail;
    } catch (error) {
      if (this.detailKey !== key) return;
      this.detail = { error: error.message, task_id: node.task_id };
    }
    if (this.panelNode === node.task_id && this.tab !== "logs") this.renderPanelBody(node, true);
  }

  renderPanelBody(node, fresh) {
    const detail = this.detail && this.detail.task_id === node.task_id ? this.detail : null;
    if (this.tab === "logs") {
      if (fresh || !this.log || this.log.taskId !== node.task_id) this.startLog(node);
      return;
    }
    if (this.log) {
      this.log.controller.abort();
      this.log = null;
    }
    if (this.tab === "overview") this.panelBody.replaceChildren(overview(node, detail, this.byId));
    else if (!detail) this.panelBody.replaceChildren(h("div", { class: "loading" }, "Loading the task…"));
    else if (detail.error) this.panelBody.replaceChildren(h("div", { class: "error", role: "alert" }, `Could not load the task: ${detail.error}`));
    else if (this.tab === "io") this.panelBody.replaceChildren(inputsOutputs(detail));
    else if (fresh || !this.panelBody.querySelector(".artifact-list")) this.panelBody.replaceChildren(artifactList(this.id, detail));
  }

  // Streams the task's log (…/log?follow=true) while it runs; a search box keeps
  // the matching lines only.
  startLog(node) {
    if (this.log) this.log.controller.abort();
    const search = h("input", { type: "search", id: "log-search", placeholder: "search the log", "aria-label": "Search the log" });
    const count = h("span", { class: "muted", id: "log-count", role: "status" });
    const pre = h("pre", { class: "log", id: "log", tabindex: "0" });
    const log = { taskId: node.task_id, controller: new AbortController(), text: "", ended: false };
    this.log = log;
    const show = () => {
      const term = search.value.trim().toLowerCase();
      let lines = log.text.split("\n");
      if (lines[lines.length - 1] === "") lines.pop();
      const total = lines.length;
      if (term) lines = lines.filter((line) => line.toLowerCase().includes(term));
      const shown = lines.slice(-LOG_LINES_SHOWN);
      const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent = shown.join("\n");
      if (stick) pre.scrollTop = pre.scrollHeight;
      count.textContent = (term ? `${lines.length} of ${total} lines match` : `${total} lines`)
        + (log.ended ? "" : " · following");
    };
    search.addEventListener("input", show);
    this.panelBody.replaceChildren(h("div", { class: "toolbar" }, search, count), pre);
    const follow = !TERMINAL.has(node.state) || !node.finished_at;
    const url = `/apis/v1alpha1/runs/${enc(this.id)}/nodes/${enc(node.task_id)}/log` + (follow ? "?follow=true" : "");
    (async () => {
      try {
        const response = await fetch(url, { signal: log.controller.signal });
        if (!response.ok) {
          let message = `${response.status} ${response.statusText}`;
          try { message = (await response.json()).message || message; } catch (_) { /* not JSON */ }
          throw new Error(message);
        }
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value: chunk, done } = await reader.read();
          if (done) break;
          log.text += chunk;
          show();
        }
        log.ended = true;
        show();
      } catch (error) {
        if (log.controller.signal.aborted) return;
        pre.replaceWith(h("div", { class: "error", role: "alert" }, `Could not read the log: ${error.message}`));
      }
    })();
    show();
  }
}

function overview(node, detail, byId) {
  const cachedFrom = node.cached_from ? byId.get(node.cached_from) : null;
  const attempts = detail && detail.details && Array.isArray(detail.details.attempts) ? detail.details.attempts : [];
  const unix = (value) => (value ? new Date(value * 1000).toLocaleString() : "");
  return h("div", {},
    facts([
      ["Task ID", node.task_id, "mono"],
      ["Kind", KIND_LABELS[node.kind] || node.kind],
      detail && detail.path ? ["Path", detail.path, "mono"] : null,
      node.iteration_index !== undefined ? ["Iteration", String(node.iteration_index)] : null,
      ["Started", time(node.started_at)],
      ["Finished", time(node.finished_at)],
      ["Duration", duration(node.started_at, node.finished_at)],
      node.cached_from ? ["Cache source", cachedFrom
        ? nodeLabel(cachedFrom) + " (this run)"
        : h("span", { class: "mono" }, node.cached_from)] : null,
      detail && detail.fingerprint ? ["Cache key", detail.fingerprint, "mono"] : null,
      detail && detail.details && detail.details.exit_code !== undefined ? ["Exit code", String(detail.details.exit_code)] : null,
    ]),
    node.error ? h("div", { class: "error", role: "alert" }, node.error) : null,
    attempts.length ? [h("h4", {}, "Attempts"), table([["#"], ["State"], ["Started"], ["Finished"], ["Error"]],
      attempts.map((attempt) => h("tr", {},
        h("td", {}, String(attempt.attempt || "")), h("td", {}, state(attempt.state)),
        h("td", {}, unix(attempt.started_at)), h("td", {}, unix(attempt.finished_at)),
        h("td", {}, attempt.error || ""))), "")] : null);
}

function parameterTable(values, emptyText) {
  return table([["Name"], ["Value"]], parameterRows(values), emptyText);
}

function inputsOutputs(detail) {
  const artifactRows = (list) => list.map(({ key, artifact }) => h("tr", {},
    h("td", { class: "mono" }, key), h("td", {}, artifact.type ? artifact.type.schema_title : ""),
    h("td", { class: "mono" }, artifact.uri)));
  return h("div", {},
    h("h4", {}, "Input parameters"), parameterTable(detail.inputs, "No input parameters."),
    h("h4", {}, "Output parameters"), parameterTable(detail.outputs, "No output parameters."),
    h("h4", {}, "Input artifacts"),
    table([["Name"], ["Type"], ["URI"]], artifactRows(detail.input_artifacts || []), "No input artifacts."),
    h("h4", {}, "Output artifacts"),
    table([["Name"], ["Type"], ["URI"]], artifactRows(detail.output_artifacts || []), "No output artifacts."));
}

function artifactList(runId, detail) {
  const all = [...(detail.output_artifacts || []).map((entry) => ["output", entry]),
    ...(detail.input_artifacts || []).map((entry) => ["input", entry])];
  if (!all.length) return h("div", { class: "empty artifact-list" }, "This task has no artifacts.");
  const preview = h("div", { class: "preview", id: "artifact-preview", "aria-live": "polite" });
  const items = all.map(([side, { key, artifact }]) => h("li", {},
    button(`${key} (${side})`, (event) => {
      for (const other of event.target.closest("ul").querySelectorAll("button")) other.setAttribute("aria-pressed", "false");
      event.target.setAttribute("aria-pressed", "true");
      showPreview(preview, runId, artifact);
    }, { class: "link", "aria-pressed": "false", "data-artifact": key }),
    " ", h("span", { class: "muted" }, artifact.type ? artifact.type.schema_title : ""),
    artifact.state === "DELETED" ? h("span", { class: "muted" }, " (deleted by retention)") : ""));
  return h("div", {}, h("ul", { class: "artifact-list" }, items), preview);
}
