// The kfpd web UI: one page that routes on the URL fragment, so the links the kfp
// SDK prints (#/runs/details/<id>, #/experiments/details/<id>,
// #/pipelines/details/<id>/version/<vid>) land on the matching view. Each view makes
// one request to the REST API (two independent ones for a detail plus its list),
// never one per row. Everything user-controlled is inserted as text, never as HTML.
"use strict";

const API = "/apis/v2beta1";
const PAGE_SIZE = 20;
const REFRESH_MS = 2000;
// A request still unanswered after this long is abandoned (and retried when live).
const REQUEST_TIMEOUT_MS = 15000;
const TERMINAL = new Set(["SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"]);
const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED", "PAUSED"];

// Bumped on every navigation; a view whose generation is stale stops updating.
let generation = 0;
let timer = null;

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    // Through the CSSOM: the Content-Security-Policy blocks style attributes.
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const url = API + path + (params.toString() ? "?" + params : "");
  const response = await fetch(url, {
    headers: { accept: "application/json" },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.message ? body.message : response.status + " " + response.statusText;
    throw new ApiError(response.status, message);
  }
  return body || {};
}

function time(text) {
  if (!text) return "";
  const date = new Date(text);
  if (isNaN(date) || date.getUTCFullYear() < 1971) return "";
  return date.toLocaleString();
}

function duration(start, end) {
  const from = Date.parse(start);
  if (!start || isNaN(from) || new Date(from).getUTCFullYear() < 1971) return "";
  const endMs = end && new Date(end).getUTCFullYear() >= 1971 ? Date.parse(end) : Date.now();
  let seconds = Math.max(0, Math.round((endMs - from) / 1000));
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${seconds}s`;
  return `${seconds}s`;
}

function state(value) {
  const name = value || "RUNTIME_STATE_UNSPECIFIED";
  const label = name === "RUNTIME_STATE_UNSPECIFIED" ? "UNKNOWN" : name;
  return h("span", { class: "state " + name, "data-state": name }, label);
}

function table(headers, rows, emptyText) {
  if (!rows.length) return h("div", { class: "empty card" }, emptyText);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", { class: cls, scope: "col" }, label)))),
      h("tbody", {}, rows)));
}

function render(...nodes) {
  const page = document.getElementById("page");
  page.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined && node !== false));
}

function showError(error, what) {
  const message = error instanceof ApiError && error.status === 404
    ? `${what} was not found (it may have been deleted).`
    : `Could not load ${what.toLowerCase()}: ${error.message}`;
  render(h("div", { class: "error", role: "alert" }, message));
}

function value(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

// Query of the fragment: #/runs?state=RUNNING&name=x&token=...
function fragmentQuery(query) {
  const params = new URLSearchParams(query || "");
  return Object.fromEntries(params.entries());
}

function go(path, query) {
  const params = new URLSearchParams();
  for (const [key, v] of Object.entries(query || {})) if (v) params.set(key, v);
  const text = params.toString();
  location.hash = "#" + path + (text ? "?" + text : "");
}

// Paging keeps the tokens of earlier pages in the fragment ("back" = "prev" list).
function pager(path, query, nextToken) {
  const previous = query.prev ? query.prev.split(",") : [];
  const pageNumber = previous.length + 1;
  const back = () => {
    const tokens = previous.slice();
    const token = tokens.pop();
    go(path, { ...query, token: token === "-" ? "" : token, prev: tokens.join(",") });
  };
  const forward = () => {
    go(path, { ...query, token: nextToken, prev: previous.concat(query.token || "-").join(",") });
  };
  return h("div", { class: "pager" },
    h("button", { onclick: back, disabled: previous.length === 0, "aria-label": "Previous page" }, "‹ Previous"),
    h("span", {}, `Page ${pageNumber}`),
    h("button", { onclick: forward, disabled: !nextToken, "aria-label": "Next page" }, "Next ›"));
}

function runRows(runs) {
  return runs.map((run) => h("tr", { "data-run-id": run.run_id },
    h("td", {}, h("a", { href: `#/runs/details/${encodeURIComponent(run.run_id)}` }, run.display_name || run.run_id)),
    h("td", {}, state(run.state)),
    h("td", { class: "wide" }, time(run.created_at)),
    h("td", { class: "wide" }, duration(run.scheduled_at || run.created_at, run.finished_at)),
    h("td", { class: "wide" }, run.experiment_id
      ? h("a", { href: `#/experiments/details/${encodeURIComponent(run.experiment_id)}` }, "experiment")
      : "")));
}

const RUN_HEADERS = [["Name"], ["State"], ["Created", "wide"], ["Duration", "wide"], ["Experiment", "wide"]];

function runFilter(query) {
  const predicates = [];
  if (query.state) predicates.push({ key: "state", operation: "EQUALS", string_value: query.state });
  if (query.name) predicates.push({ key: "display_name", operation: "IS_SUBSTRING", string_value: query.name });
  return predicates.length ? JSON.stringify({ predicates }) : "";
}

async function runsPage(query) {
  const stateSelect = h("select", { id: "state-filter", name: "state" },
    h("option", { value: "" }, "Any state"),
    STATES.map((s) => h("option", { value: s, selected: query.state === s }, s)));
  const nameInput = h("input", { id: "name-filter", name: "name", type: "search", value: query.name || "", placeholder: "part of a name" });
  const form = h("form", { class: "toolbar", onsubmit: (event) => {
    event.preventDefault();
    go("/runs", { state: stateSelect.value, name: nameInput.value.trim() });
  } },
  h("label", { for: "state-filter" }, "State", stateSelect),
  h("label", { for: "name-filter" }, "Name contains", nameInput),
  h("button", { type: "submit" }, "Filter"));
  stateSelect.addEventListener("change", () => form.requestSubmit());
  render(h("h1", {}, "Runs"), form, h("div", { class: "loading" }, "Loading runs…"));
  const body = await api("/runs", {
    page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc", filter: runFilter(query),
  });
  const runs = body.runs || [];
  const filtered = query.state || query.name;
  render(h("h1", {}, "Runs"), form,
    table(RUN_HEADERS, runRows(runs), filtered ? "No runs match this filter." : "No runs yet."),
    pager("/runs", query, body.next_page_token));
}

// Tasks in tree order: each DAG followed by its children, siblings by creation time.
function taskRows(tasks) {
  const ids = new Set(tasks.map((task) => task.task_id));
  const children = new Map();
  for (const task of tasks) {
    const parent = ids.has(task.parent_task_id) ? task.parent_task_id : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(task);
  }
  const byCreation = (a, b) =>
    String(a.create_time || "").localeCompare(String(b.create_time || "")) ||
    String(a.display_name || "").localeCompare(String(b.display_name || ""));
  const order = [];
  const depths = new Map();
  const visit = (parent, level) => {
    for (const task of (children.get(parent) || []).sort(byCreation)) {
      if (depths.has(task.task_id)) continue;
      depths.set(task.task_id, level);
      order.push(task);
      visit(task.task_id, level + 1);
    }
  };
  visit("", 0);
  // A parent cycle in bad data must not hide tasks.
  for (const task of tasks) if (!depths.has(task.task_id)) order.push(task);
  const depth = (task) => depths.get(task.task_id) || 0;
  return order.map((task) => h("tr", { "data-task-id": task.task_id },
    h("td", {}, h("span", { class: "indent", style: `padding-left:${depth(task) * 1.2}rem` }, task.display_name || task.task_id)),
    h("td", {}, state(task.state)),
    h("td", { class: "wide" }, time(task.start_time)),
    h("td", { class: "wide" }, duration(task.start_time, task.end_time)),
    h("td", { class: "wide" }, task.error && task.error.message ? task.error.message : "")));
}

function parameterRows(parameters) {
  return Object.entries(parameters || {}).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, v]) => h("tr", {}, h("td", { class: "mono" }, name), h("td", { class: "mono" }, value(v))));
}

function versionLink(reference) {
  if (!reference || !reference.pipeline_id) return "";
  const pid = encodeURIComponent(reference.pipeline_id);
  if (!reference.pipeline_version_id) return h("a", { href: `#/pipelines/details/${pid}` }, reference.pipeline_id);
  const vid = encodeURIComponent(reference.pipeline_version_id);
  return h("a", { href: `#/pipelines/details/${pid}/version/${vid}` }, reference.pipeline_version_id);
}

async function runDetailsPage(id) {
  const mine = generation;
  render(h("div", { class: "loading" }, "Loading run…"));
  let shown = false;
  const refresh = async () => {
    let run;
    try {
      run = await api(`/runs/${encodeURIComponent(id)}`);
    } catch (error) {
      if (mine !== generation) return;
      // A live view keeps what it shows through a failed refresh and tries again;
      // only a first load or a vanished run replaces the page with the error.
      const gone = error instanceof ApiError && error.status === 404;
      if (shown && !gone) {
        const note = document.getElementById("refresh-error");
        if (note) note.textContent = `Refresh failed (${error.message}); retrying.`;
        timer = setTimeout(refresh, REFRESH_MS);
      } else {
        showError(error, "Run " + id);
      }
      return;
    }
    if (mine !== generation) return;
    const live = !TERMINAL.has(run.state);
    const tasks = (run.run_details && run.run_details.task_details) || [];
    const config = run.runtime_config || {};
    render(
      h("h1", {}, h("span", { id: "run-name" }, run.display_name || run.run_id), state(run.state),
        live ? h("span", { class: "live" }, "● live") : null,
        h("span", { class: "live", id: "refresh-error", role: "status" })),
      h("div", { class: "card" }, h("dl", { class: "facts" },
        h("dt", {}, "Run ID"), h("dd", { class: "mono" }, run.run_id),
        h("dt", {}, "Experiment"), h("dd", {}, run.experiment_id
          ? h("a", { href: `#/experiments/details/${encodeURIComponent(run.experiment_id)}` }, run.experiment_id) : ""),
        h("dt", {}, "Pipeline version"), h("dd", {}, versionLink(run.pipeline_version_reference) || (run.pipeline_spec ? "inline spec" : "")),
        h("dt", {}, "Created"), h("dd", {}, time(run.created_at)),
        h("dt", {}, "Finished"), h("dd", {}, time(run.finished_at)),
        h("dt", {}, "Duration"), h("dd", {}, duration(run.scheduled_at || run.created_at, run.finished_at)),
        run.description ? [h("dt", {}, "Description"), h("dd", {}, run.description)] : null,
        run.storage_state === "ARCHIVED" ? [h("dt", {}, "Storage"), h("dd", {}, "archived")] : null)),
      run.error && run.error.message ? h("div", { class: "error", role: "alert", style: "margin-top:.8rem" }, run.error.message) : null,
      h("h2", {}, "Parameters"),
      table([["Name"], ["Value"]], parameterRows(config.parameters), "No parameters."),
      h("h2", {}, `Tasks (${tasks.length})`),
      h("div", { id: "tasks" }, table([["Task"], ["State"], ["Started", "wide"], ["Duration", "wide"], ["Error", "wide"]],
        taskRows(tasks), live ? "No tasks have started yet." : "This run has no tasks.")));
    shown = true;
    if (live) timer = setTimeout(refresh, REFRESH_MS);
  };
  await refresh();
}

async function experimentsPage(query) {
  render(h("h1", {}, "Experiments"), h("div", { class: "loading" }, "Loading experiments…"));
  const body = await api("/experiments", { page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc" });
  const rows = (body.experiments || []).map((e) => h("tr", { "data-experiment-id": e.experiment_id },
    h("td", {}, h("a", { href: `#/experiments/details/${encodeURIComponent(e.experiment_id)}` }, e.display_name || e.experiment_id)),
    h("td", { class: "wide" }, e.description || ""),
    h("td", { class: "wide" }, time(e.created_at)),
    h("td", {}, e.storage_state === "ARCHIVED" ? "archived" : "")));
  render(h("h1", {}, "Experiments"),
    table([["Name"], ["Description", "wide"], ["Created", "wide"], ["Storage"]], rows, "No experiments yet."),
    pager("/experiments", query, body.next_page_token));
}

async function experimentDetailsPage(id, query) {
  render(h("div", { class: "loading" }, "Loading experiment…"));
  const path = `/experiments/details/${id}`;
  let experiment, runs;
  try {
    [experiment, runs] = await Promise.all([
      api(`/experiments/${encodeURIComponent(id)}`),
      api("/runs", { experiment_id: id, page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc" }),
    ]);
  } catch (error) {
    showError(error, "Experiment " + id);
    return;
  }
  render(h("h1", {}, h("span", { id: "experiment-name" }, experiment.display_name || id)),
    h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Experiment ID"), h("dd", { class: "mono" }, experiment.experiment_id),
      h("dt", {}, "Description"), h("dd", {}, experiment.description || ""),
      h("dt", {}, "Created"), h("dd", {}, time(experiment.created_at)),
      h("dt", {}, "Storage"), h("dd", {}, experiment.storage_state === "ARCHIVED" ? "archived" : "available"))),
    h("h2", {}, "Runs"),
    table(RUN_HEADERS, runRows(runs.runs || []), "This experiment has no runs."),
    pager(path, query, runs.next_page_token));
}

async function pipelinesPage(query) {
  render(h("h1", {}, "Pipelines"), h("div", { class: "loading" }, "Loading pipelines…"));
  const body = await api("/pipelines", { page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc" });
  const rows = (body.pipelines || []).map((p) => h("tr", { "data-pipeline-id": p.pipeline_id },
    h("td", {}, h("a", { href: `#/pipelines/details/${encodeURIComponent(p.pipeline_id)}` }, p.display_name || p.pipeline_id)),
    h("td", { class: "wide" }, p.description || ""),
    h("td", { class: "wide" }, time(p.created_at))));
  render(h("h1", {}, "Pipelines"),
    table([["Name"], ["Description", "wide"], ["Created", "wide"]], rows, "No pipelines yet."),
    pager("/pipelines", query, body.next_page_token));
}

async function pipelineDetailsPage(id, query) {
  render(h("div", { class: "loading" }, "Loading pipeline…"));
  let pipeline, versions;
  try {
    [pipeline, versions] = await Promise.all([
      api(`/pipelines/${encodeURIComponent(id)}`),
      api(`/pipelines/${encodeURIComponent(id)}/versions`, { page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc" }),
    ]);
  } catch (error) {
    showError(error, "Pipeline " + id);
    return;
  }
  const rows = (versions.pipeline_versions || []).map((v) => h("tr", { "data-version-id": v.pipeline_version_id },
    h("td", {}, h("a", { href: `#/pipelines/details/${encodeURIComponent(id)}/version/${encodeURIComponent(v.pipeline_version_id)}` },
      v.display_name || v.pipeline_version_id)),
    h("td", { class: "wide" }, v.description || ""),
    h("td", { class: "wide" }, time(v.created_at))));
  render(h("h1", {}, h("span", { id: "pipeline-name" }, pipeline.display_name || id)),
    h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Pipeline ID"), h("dd", { class: "mono" }, pipeline.pipeline_id),
      h("dt", {}, "Description"), h("dd", {}, pipeline.description || ""),
      h("dt", {}, "Created"), h("dd", {}, time(pipeline.created_at)))),
    h("h2", {}, "Versions"),
    table([["Version"], ["Description", "wide"], ["Created", "wide"]], rows, "This pipeline has no versions."),
    pager(`/pipelines/details/${id}`, query, versions.next_page_token));
}

// The root DAG's tasks of a pipeline spec, with what each depends on.
function specTaskRows(spec) {
  const root = spec && spec.root && spec.root.dag && spec.root.dag.tasks;
  return Object.entries(root || {}).sort(([a], [b]) => a.localeCompare(b)).map(([name, task]) => h("tr", {},
    h("td", { class: "mono" }, name),
    h("td", { class: "mono" }, (task.componentRef && task.componentRef.name) || ""),
    h("td", { class: "mono" }, (task.dependentTasks || []).join(", "))));
}

async function versionDetailsPage(pipelineId, versionId) {
  render(h("div", { class: "loading" }, "Loading pipeline version…"));
  let version;
  try {
    version = await api(`/pipelines/${encodeURIComponent(pipelineId)}/versions/${encodeURIComponent(versionId)}`);
  } catch (error) {
    showError(error, "Pipeline version " + versionId);
    return;
  }
  const spec = version.pipeline_spec || {};
  const inner = spec.pipeline_spec || spec;
  render(h("h1", {}, h("span", { id: "version-name" }, version.display_name || versionId)),
    h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Pipeline"), h("dd", {}, h("a", { href: `#/pipelines/details/${encodeURIComponent(pipelineId)}` }, pipelineId)),
      h("dt", {}, "Version ID"), h("dd", { class: "mono" }, version.pipeline_version_id),
      h("dt", {}, "Pipeline name"), h("dd", { class: "mono" }, (inner.pipelineInfo && inner.pipelineInfo.name) || ""),
      h("dt", {}, "Description"), h("dd", {}, version.description || ""),
      h("dt", {}, "Created"), h("dd", {}, time(version.created_at)))),
    h("h2", {}, "Tasks"),
    table([["Task"], ["Component"], ["After"]], specTaskRows(inner), "The spec has no root DAG tasks."),
    h("h2", {}, "Spec"),
    h("pre", { class: "spec", id: "spec", tabindex: "0" }, JSON.stringify(spec, null, 2)));
}

function notFound(hash) {
  render(h("h1", {}, "Page not found"),
    h("p", {}, `Nothing is at ${hash}. `, h("a", { href: "#/runs" }, "Go to the runs.")));
}

const ROUTES = [
  [/^\/runs\/details\/([^/?]+)$/, (m) => runDetailsPage(decodeURIComponent(m[1])), "runs"],
  [/^\/runs$/, (m, q) => runsPage(q), "runs"],
  [/^\/experiments\/details\/([^/?]+)$/, (m, q) => experimentDetailsPage(decodeURIComponent(m[1]), q), "experiments"],
  [/^\/experiments$/, (m, q) => experimentsPage(q), "experiments"],
  [/^\/pipelines\/details\/([^/?]+)\/version\/([^/?]+)$/,
    (m) => versionDetailsPage(decodeURIComponent(m[1]), decodeURIComponent(m[2])), "pipelines"],
  [/^\/pipelines\/details\/([^/?]+)$/, (m, q) => pipelineDetailsPage(decodeURIComponent(m[1]), q), "pipelines"],
  [/^\/pipelines$/, (m, q) => pipelinesPage(q), "pipelines"],
];

async function route() {
  generation += 1;
  clearTimeout(timer);
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, query] = hash.split("?");
  for (const [pattern, view, section] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const link of document.querySelectorAll("nav a[data-section]")) {
      link.classList.toggle("current", link.dataset.section === section);
    }
    document.title = "kfpd · " + section;
    try {
      await view(match, fragmentQuery(query));
    } catch (error) {
      showError(error, section[0].toUpperCase() + section.slice(1));
    }
    return;
  }
  notFound(location.hash);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
