// The kfpd web UI: one page that routes on the URL fragment, so the links the kfp
// SDK prints (#/runs/details/<id>, #/experiments/details/<id>,
// #/pipelines/details/<id>/version/<vid>) land on the matching view. Each view makes
// one request to the REST API (two independent ones for a detail plus its list),
// never one per row; actions on several selected rows make one call per row, as
// the API has no batch calls.
"use strict";

// Bumped on every navigation; a view whose generation is stale stops updating.
let generation = 0;
// Called on navigation: streams and timers of the view being left.
let cleanups = [];

function parameterRows(parameters) {
  return Object.entries(parameters || {}).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, v]) => h("tr", {}, h("td", { class: "mono" }, name), h("td", { class: "mono" }, value(v))));
}

function versionLink(reference) {
  if (!reference || !reference.pipeline_id) return "";
  if (!reference.pipeline_version_id) return h("a", { href: pipelineHref(reference.pipeline_id) }, reference.pipeline_id);
  return h("a", { href: versionHref(reference.pipeline_id, reference.pipeline_version_id) }, reference.pipeline_version_id);
}

// ---- runs ----------------------------------------------------------------

const RUN_VERBS = {
  archive: (run) => api(`/runs/${enc(run.run_id)}:archive`, null, { method: "POST" }),
  restore: (run) => api(`/runs/${enc(run.run_id)}:unarchive`, null, { method: "POST" }),
  retry: (run) => api(`/runs/${enc(run.run_id)}:retry`, null, { method: "POST" }),
  terminate: (run) => api(`/runs/${enc(run.run_id)}:terminate`, null, { method: "POST" }),
  delete: (run) => api(`/runs/${enc(run.run_id)}`, null, { method: "DELETE" }),
};

// The buttons of the run page, each shown when the run's state allows it.
function runActions(run, after) {
  const live = !TERMINAL.has(run.state);
  const archived = run.storage_state === "ARCHIVED";
  const acting = (label, verb, question) => button(label, async (event) => {
    if (question && !(await confirmAction(question, label))) return;
    await act(event.target, label, () => RUN_VERBS[verb](run), verb === "delete" ? () => go("/runs") : after);
  }, { id: `run-${verb}` });
  return [
    ["FAILED", "CANCELED"].includes(run.state) ? acting("Retry", "retry") : null,
    live && run.state !== "CANCELING" ? acting("Terminate", "terminate", `Terminate run "${run.display_name}"? Its running tasks are stopped.`) : null,
    button("Clone", () => go("/runs/new", { clone: run.run_id }), { id: "run-clone" }),
    archived ? acting("Restore", "restore") : acting("Archive", "archive"),
    acting("Delete", "delete", `Delete run "${run.display_name}" and its records? This cannot be undone.`),
  ].filter(Boolean);
}

const SORTS = { name: "display_name", created: "created_at" };

function sortHeader(label, column, query, path) {
  const [current, direction] = (query.sort || "created desc").split(" ");
  const active = current === column;
  const next = active && direction !== "desc" ? `${column} desc` : active ? column : `${column}${column === "created" ? " desc" : ""}`;
  const arrow = active ? (direction === "desc" ? " ↓" : " ↑") : "";
  return h("th", { scope: "col", "aria-sort": active ? (direction === "desc" ? "descending" : "ascending") : "none" },
    h("button", { class: "sort", onclick: () => go(path, { ...query, sort: next, token: "", prev: "" }) }, label + arrow));
}

function sortBy(query) {
  const [column, direction] = (query.sort || "created desc").split(" ");
  return (SORTS[column] || "created_at") + (direction === "desc" ? " desc" : "");
}

function runRow(run, selection, onChange) {
  const box = h("input", { type: "checkbox", "data-select": run.run_id, "aria-label": `Select run ${run.display_name}`, checked: selection.has(run.run_id) });
  box.addEventListener("change", () => {
    box.checked ? selection.add(run.run_id) : selection.delete(run.run_id);
    onChange();
  });
  return h("tr", { "data-run-id": run.run_id },
    h("td", { class: "check" }, box),
    h("td", {}, h("a", { href: runHref(run.run_id) }, run.display_name || run.run_id),
      run.storage_state === "ARCHIVED" ? h("span", { class: "muted" }, " (archived)") : null),
    h("td", { class: "run-state" }, state(run.state)),
    h("td", { class: "wide" }, time(run.created_at)),
    h("td", { class: "wide run-duration" }, duration(run.scheduled_at || run.created_at, run.finished_at)),
    h("td", { class: "wide" }, run.experiment_id ? h("a", { href: experimentHref(run.experiment_id) }, "experiment") : ""));
}

// A runs table with a checkbox per row; `selection` is a Set of run ids.
function runsTable(runs, selection, onChange, query, path, emptyText) {
  const all = h("input", { type: "checkbox", "aria-label": "Select all runs on this page", id: "select-all",
    checked: runs.length > 0 && runs.every((run) => selection.has(run.run_id)) });
  all.addEventListener("change", () => {
    for (const run of runs) all.checked ? selection.add(run.run_id) : selection.delete(run.run_id);
    for (const box of document.querySelectorAll("input[data-select]")) box.checked = all.checked;
    onChange();
  });
  const rows = runs.map((run) => runRow(run, selection, onChange));
  return table([h("th", { class: "check", scope: "col" }, all), sortHeader("Name", "name", query, path), ["State"],
    sortHeader("Created", "created", query, path), ["Duration", "wide"], ["Experiment", "wide"]], rows, emptyText, { id: "runs-table" });
}

// The toolbar over a runs table: what can be done with the selected runs of the
// page `current()` returns.
function runBulkBar(current, selection, reload) {
  const bar = h("div", { class: "actions", role: "toolbar", "aria-label": "Selected runs", id: "bulk" });
  const chosen = () => current().filter((run) => selection.has(run.run_id));
  const many = (label, verb, question) => button(label, async (event) => {
    const list = chosen();
    if (question && !(await confirmAction(question(list.length), label))) return;
    await act(event.target, `${label} ${list.length} run(s)`, async () => {
      const outcomes = await Promise.allSettled(list.map((run) => RUN_VERBS[verb](run)));
      const failed = outcomes.filter((outcome) => outcome.status === "rejected");
      if (failed.length) throw new Error(`${failed.length} of ${list.length} failed: ${failed[0].reason.message}`);
    }, reload);
  }, { "data-bulk": verb });
  const buttons = [
    many("Archive", "archive"), many("Restore", "restore"),
    many("Retry", "retry"), many("Terminate", "terminate", (n) => `Terminate ${n} run(s)?`),
    many("Delete", "delete", (n) => `Delete ${n} run(s)? This cannot be undone.`),
    button("Clone", () => go("/runs/new", { clone: chosen()[0].run_id }), { "data-bulk": "clone" }),
    button("Compare", () => go("/compare", { runs: chosen().map((run) => run.run_id).join(",") }),
      { "data-bulk": "compare", title: "2 to 10 runs" }),
  ];
  const count = h("span", { class: "muted", role: "status" });
  bar.append(count, ...buttons);
  // Buttons stay the same elements (so the keyboard's focus stays on them); only
  // whether each is enabled changes with the selection and the runs' states.
  const update = () => {
    const list = chosen();
    count.textContent = list.length ? `${list.length} selected` : "Select runs to act on them";
    for (const node of buttons) {
      const verb = node.dataset.bulk;
      const allowed = verb === "clone" ? list.length === 1
        : verb === "compare" ? list.length >= 2 && list.length <= 10
          : list.some((run) => ({
            archive: run.storage_state !== "ARCHIVED", restore: run.storage_state === "ARCHIVED",
            retry: ["FAILED", "CANCELED"].includes(run.state), terminate: !TERMINAL.has(run.state),
            delete: true,
          })[verb]);
      node.disabled = !allowed;
    }
  };
  update();
  return { bar, update };
}

// A page of runs read through `GET /runs:watch`: the stream's first event is the
// page, later ones arrive only while a run on it is live, and the stream ends once
// none is. Rows update in place; the selection and the keyboard's focus stay.
// Resolves with the first page (rejects when it cannot be read).
function liveRuns(listQuery, query, path, emptyText) {
  let runs = [];
  const selection = new Set();
  const bulk = runBulkBar(() => runs, selection, () => route());
  const tableHost = h("div", {});
  const pagerHost = h("div", {});
  const liveNote = h("span", { class: "live", id: "runs-live", role: "status" });
  const show = (body) => {
    const next = body.runs || [];
    const sameRows = runs.length === next.length && runs.every((run, index) => run.run_id === next[index].run_id)
      && tableHost.querySelector("tbody");
    runs = next;
    for (const id of [...selection]) if (!runs.some((run) => run.run_id === id)) selection.delete(id);
    if (sameRows) {
      for (const run of runs) {
        const row = tableHost.querySelector(`tr[data-run-id="${CSS.escape(run.run_id)}"]`);
        if (!row) continue;
        const cell = row.querySelector("td.run-state");
        if (cell.firstChild.dataset.state !== (run.state || "RUNTIME_STATE_UNSPECIFIED")) cell.replaceChildren(state(run.state));
        row.querySelector("td.run-duration").textContent = duration(run.scheduled_at || run.created_at, run.finished_at);
      }
    } else {
      tableHost.replaceChildren(runsTable(runs, selection, bulk.update, query, path, emptyText));
      pagerHost.replaceChildren(pager(path, query, body.next_page_token));
    }
    bulk.update();
    liveNote.textContent = runs.some((run) => !TERMINAL.has(run.state)) ? "● live" : "";
  };
  const controller = new AbortController();
  cleanups.push(() => controller.abort());
  const url = `${API}/runs:watch` + queryString(namespaced("/runs:watch", "GET", listQuery).query);
  const first = new Promise((resolve, reject) => {
    let shown = false;
    const onEvent = (name, data) => {
      if (name !== "runs") return;
      show(JSON.parse(data));
      if (!shown) {
        shown = true;
        resolve({ nodes: [bulk.bar, tableHost, pagerHost], liveNote });
      }
    };
    (async () => {
      for (;;) {
        try {
          await readEvents(url, controller.signal, onEvent);
          if (!shown) throw new Error("the runs stream ended before its first page");
          if (controller.signal.aborted || !runs.some((run) => !TERMINAL.has(run.state))) return;
        } catch (error) {
          if (controller.signal.aborted) return;
          if (!shown) {
            reject(error);
            return;
          }
          liveNote.textContent = `Connection lost (${error.message}); reconnecting.`;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
        if (controller.signal.aborted) return;
      }
    })();
  });
  return first;
}

function runFilter(query) {
  const predicates = [];
  if (query.state) predicates.push({ key: "state", operation: "EQUALS", string_value: query.state });
  if (query.name) predicates.push({ key: "display_name", operation: "IS_SUBSTRING", string_value: query.name });
  predicates.push({ key: "storage_state", operation: "EQUALS", string_value: query.archived ? "ARCHIVED" : "AVAILABLE" });
  return predicateFilter(predicates);
}

async function runsPage(query) {
  const stateSelect = h("select", { id: "state-filter", name: "state" },
    h("option", { value: "" }, "Any state"),
    STATES.map((s) => h("option", { value: s, selected: query.state === s }, s)));
  const nameInput = h("input", { id: "name-filter", name: "name", type: "search", value: query.name || "", placeholder: "part of a name" });
  const archived = h("select", { id: "storage-filter" },
    h("option", { value: "" }, "Active"), h("option", { value: "1", selected: !!query.archived }, "Archived"));
  const form = h("form", { class: "toolbar", onsubmit: (event) => {
    event.preventDefault();
    go("/runs", { state: stateSelect.value, name: nameInput.value.trim(), archived: archived.value, sort: query.sort });
  } },
  h("label", { for: "state-filter" }, "State", stateSelect),
  h("label", { for: "name-filter" }, "Name contains", nameInput),
  h("label", { for: "storage-filter" }, "Showing", archived),
  h("button", { type: "submit" }, "Filter"));
  stateSelect.addEventListener("change", () => form.requestSubmit());
  archived.addEventListener("change", () => form.requestSubmit());
  const heading = h("h1", {}, "Runs", h("a", { class: "button", href: "#/pipelines" }, "New run from a pipeline"));
  render(heading, form, h("div", { class: "loading" }, "Loading runs…"));
  const filtered = query.state || query.name;
  const emptyText = filtered ? "No runs match this filter." : query.archived ? "No archived runs." : "No runs yet.";
  const list = await liveRuns({ page_size: PAGE_SIZE, page_token: query.token, sort_by: sortBy(query), filter: runFilter(query) },
    query, "/runs", emptyText);
  heading.append(list.liveNote);
  render(heading, form, list.nodes);
}

async function runDetailsPage(id, query) {
  await new RunPage(id, query).start();
}

// ---- create a run or a recurring run ----------------------------------

const TYPE_LABELS = {
  STRING: "string", NUMBER_INTEGER: "integer", NUMBER_DOUBLE: "number", BOOLEAN: "boolean", LIST: "list (JSON)", STRUCT: "object (JSON)",
};

// One typed input per root parameter of the spec; read() returns the values or
// throws naming the first bad one.
function parameterInputs(spec, initial) {
  const definitions = ((innerSpec(spec).root || {}).inputDefinitions || {}).parameters || {};
  const fields = Object.entries(definitions).sort(([a], [b]) => a.localeCompare(b)).map(([name, definition]) => {
    const type = definition.parameterType || "STRING";
    const start = initial && name in initial ? initial[name] : definition.defaultValue;
    const id = "param-" + name;
    let input;
    if (type === "BOOLEAN") input = h("input", { type: "checkbox", id, checked: start === true || start === "true" });
    else if (type === "LIST" || type === "STRUCT") input = h("textarea", { id, rows: 2 }, start === undefined ? "" : JSON.stringify(start));
    else input = h("input", { id, type: type.startsWith("NUMBER") ? "number" : "text", step: type === "NUMBER_INTEGER" ? "1" : "any",
      value: start === undefined ? "" : String(start) });
    const required = !definition.isOptional && definition.defaultValue === undefined;
    const read = () => {
      if (type === "BOOLEAN") return input.checked;
      const text = input.value.trim();
      if (text === "") {
        if (required) throw new Error(`parameter ${name} is required`);
        return undefined;
      }
      if (type === "NUMBER_INTEGER") {
        if (!/^-?\d+$/.test(text)) throw new Error(`parameter ${name} must be an integer, not ${JSON.stringify(text)}`);
        return Number(text);
      }
      if (type === "NUMBER_DOUBLE") {
        if (isNaN(Number(text))) throw new Error(`parameter ${name} must be a number, not ${JSON.stringify(text)}`);
        return Number(text);
      }
      if (type === "LIST" || type === "STRUCT") {
        let parsed;
        try { parsed = JSON.parse(text); } catch (_) { throw new Error(`parameter ${name} must be JSON`); }
        if (type === "LIST" && !Array.isArray(parsed)) throw new Error(`parameter ${name} must be a JSON list`);
        if (type === "STRUCT" && (typeof parsed !== "object" || Array.isArray(parsed) || parsed === null)) throw new Error(`parameter ${name} must be a JSON object`);
        return parsed;
      }
      return input.value;
    };
    return { name, read, node: h("label", { for: id, class: "field" }, `${name} (${TYPE_LABELS[type] || type}${required ? ", required" : ""})`, input) };
  });
  return {
    nodes: fields.length ? fields.map((field) => field.node) : [h("p", { class: "muted" }, "This pipeline takes no parameters.")],
    read: () => {
      const values = {};
      for (const field of fields) {
        const v = field.read();
        if (v !== undefined) values[field.name] = v;
      }
      return values;
    },
  };
}

// Trigger fields of a recurring run; read() returns the API's `trigger`.
function triggerInputs(trigger) {
  const cron = (trigger && trigger.cron_schedule) || null;
  const periodic = (trigger && trigger.periodic_schedule) || null;
  const kind = h("select", { id: "trigger-kind" }, h("option", { value: "cron", selected: !periodic }, "Cron"),
    h("option", { value: "periodic", selected: !!periodic }, "Every N seconds"));
  const cronInput = h("input", { id: "trigger-cron", value: cron ? cron.cron : "0 0 * * * *", placeholder: "second minute hour day month weekday" });
  const interval = h("input", { id: "trigger-interval", type: "number", min: "1", value: periodic ? String(periodic.interval_second) : "3600" });
  return {
    nodes: [h("label", { for: "trigger-kind", class: "field" }, "Trigger", kind),
      h("label", { for: "trigger-cron", class: "field" }, "Cron expression (6 fields, with seconds)", cronInput),
      h("label", { for: "trigger-interval", class: "field" }, "Interval in seconds", interval)],
    read: () => {
      if (kind.value === "cron") {
        if (!cronInput.value.trim()) throw new Error("the cron expression is empty");
        return { cron_schedule: { cron: cronInput.value.trim() } };
      }
      const seconds = Number(interval.value);
      if (!Number.isInteger(seconds) || seconds < 1) throw new Error("the interval must be a whole number of seconds, 1 or more");
      return { periodic_schedule: { interval_second: String(seconds) } };
    },
  };
}

// #/runs/new?pipeline=P&version=V[&recurring=1] or ?clone=RUN
async function newRunPage(query) {
  render(h("div", { class: "loading" }, "Loading…"));
  let source = null;
  let spec = null;
  let initial = {};
  let name = "";
  let experimentId = query.experiment || "";
  const [experiments, loaded] = await Promise.all([
    api("/experiments", { page_size: 100, sort_by: "created_at desc", filter: predicateFilter([{ key: "storage_state", operation: "EQUALS", string_value: "AVAILABLE" }]) }),
    query.clone
      ? api(`/runs/${enc(query.clone)}`)
      : api(`/pipelines/${enc(query.pipeline || "")}/versions/${enc(query.version || "")}`),
  ]);
  if (query.clone) {
    const run = loaded;
    name = `Clone of ${run.display_name}`;
    initial = (run.runtime_config || {}).parameters || {};
    experimentId = experimentId || run.experiment_id;
    const reference = run.pipeline_version_reference;
    if (reference && reference.pipeline_version_id) {
      const version = await api(`/pipelines/${enc(reference.pipeline_id)}/versions/${enc(reference.pipeline_version_id)}`);
      source = { pipeline_version_reference: reference };
      spec = version.pipeline_spec;
    } else {
      source = { pipeline_spec: run.pipeline_spec };
      spec = run.pipeline_spec;
    }
  } else {
    source = { pipeline_version_reference: { pipeline_id: query.pipeline, pipeline_version_id: query.version } };
    spec = loaded.pipeline_spec;
    name = `Run of ${loaded.display_name}`;
  }
  const recurring = h("input", { type: "checkbox", id: "recurring", checked: query.recurring === "1" });
  const nameInput = h("input", { id: "run-name-input", value: name, required: true });
  const description = h("input", { id: "run-description" });
  const experiment = h("select", { id: "run-experiment" }, h("option", { value: "" }, "Default experiment"),
    (experiments.experiments || []).map((e) => h("option", { value: e.experiment_id, selected: e.experiment_id === experimentId }, e.display_name)));
  const parameters = parameterInputs(spec, initial);
  const trigger = triggerInputs(null);
  const maxConcurrency = h("input", { id: "max-concurrency", type: "number", min: "1", max: "10", value: "1" });
  const catchup = h("input", { type: "checkbox", id: "catchup", checked: true });
  const recurringFields = h("fieldset", { id: "recurring-fields", hidden: !recurring.checked }, h("legend", {}, "Schedule"),
    trigger.nodes,
    h("label", { for: "max-concurrency", class: "field" }, "Runs at once (1–10)", maxConcurrency),
    h("label", { for: "catchup", class: "field inline" }, catchup, "Catch up on missed ticks"));
  recurring.addEventListener("change", () => { recurringFields.hidden = !recurring.checked; });
  const problem = h("div", { role: "alert", id: "form-error" });
  const submit = h("button", { type: "submit", id: "create-run" }, "Create");
  const form = h("form", { class: "card form", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    let body;
    try {
      body = { display_name: nameInput.value.trim(), description: description.value.trim(), experiment_id: experiment.value || undefined,
        ...source, runtime_config: { parameters: parameters.read() } };
      if (!body.display_name) throw new Error("the name is empty");
      if (recurring.checked) {
        Object.assign(body, { trigger: trigger.read(), max_concurrency: String(Number(maxConcurrency.value) || 1),
          no_catchup: !catchup.checked, mode: "ENABLE" });
      }
    } catch (error) {
      problem.replaceChildren(h("div", { class: "error" }, error.message));
      return;
    }
    submit.disabled = true;
    try {
      if (recurring.checked) {
        const created = await api("/recurringruns", null, { method: "POST", body });
        go(`/recurringruns/details/${created.recurring_run_id}`);
      } else {
        const created = await api("/runs", null, { method: "POST", body });
        go(`/runs/details/${created.run_id}`);
      }
    } catch (error) {
      problem.replaceChildren(h("div", { class: "error" }, `The server refused it: ${error.message}`));
      submit.disabled = false;
    }
  } },
  h("label", { for: "run-name-input", class: "field" }, "Name", nameInput),
  h("label", { for: "run-description", class: "field" }, "Description", description),
  h("label", { for: "run-experiment", class: "field" }, "Experiment", experiment),
  h("fieldset", {}, h("legend", {}, "Parameters"), parameters.nodes),
  h("label", { for: "recurring", class: "field inline" }, recurring, "Recurring: run on a schedule"),
  recurringFields, problem, submit);
  render(h("h1", {}, query.clone ? "Clone a run" : "New run"),
    h("p", { class: "muted" }, query.clone ? `From run ${query.clone}` : `From pipeline version ${query.version}`), form);
  nameInput.focus();
}

// ---- compare ----------------------------------------------------------------

async function comparePage(query) {
  const ids = (query.runs || "").split(",").filter(Boolean).slice(0, 10);
  if (ids.length < 2) {
    render(h("h1", {}, "Compare runs"), h("div", { class: "empty card" }, "Pick 2 to 10 runs on the runs page to compare them."));
    return;
  }
  render(h("h1", {}, "Compare runs"), h("div", { class: "loading" }, "Loading runs…"));
  const [list, ...artifacts] = await Promise.all([
    api("/runs", { page_size: ids.length, filter: predicateFilter([{ key: "run_id", operation: "IN", string_values: { values: ids } }]) }),
    ...ids.map((id) => api("/artifacts", { run_id: id }).catch(() => ({}))),
  ]);
  const byId = new Map((list.runs || []).map((run) => [run.run_id, run]));
  const runs = ids.map((id) => byId.get(id)).filter(Boolean);
  const metricsOf = new Map(ids.map((id, index) => {
    const found = {};
    for (const artifact of artifacts[index].artifacts || []) {
      if (!artifact.type || artifact.type.schema_title !== "system.Metrics" || artifact.run_id !== id) continue;
      const task = artifact.producer ? artifact.producer.task_name : artifact.name;
      for (const [key, v] of Object.entries(artifact.metadata || {})) {
        if (key === "display_name") continue;
        found[`${task} · ${key}`] = v;
      }
    }
    return [id, found];
  }));
  const header = [["Name"], ...runs.map((run) => h("th", { scope: "col" }, h("a", { href: runHref(run.run_id) }, run.display_name)))];
  const rowsOf = (names, get) => [...names].sort().map((name) => {
    const values = runs.map((run) => value(get(run, name)));
    const differs = new Set(values).size > 1;
    return h("tr", { class: differs ? "differs" : "" }, h("td", { class: "mono" }, name), values.map((v) => h("td", { class: "mono" }, v)));
  });
  const paramNames = new Set(runs.flatMap((run) => Object.keys((run.runtime_config || {}).parameters || {})));
  const metricNames = new Set(runs.flatMap((run) => Object.keys(metricsOf.get(run.run_id) || {})));
  const missing = ids.filter((id) => !byId.has(id));
  render(h("h1", {}, `Compare ${runs.length} runs`),
    missing.length ? h("div", { class: "error", role: "alert" }, `Not found: ${missing.join(", ")}`) : null,
    h("h2", {}, "Overview"),
    table([["", ""], ...runs.map((run) => [run.display_name])], [
      h("tr", {}, h("td", {}, "State"), runs.map((run) => h("td", {}, state(run.state)))),
      h("tr", {}, h("td", {}, "Duration"), runs.map((run) => h("td", {}, duration(run.scheduled_at || run.created_at, run.finished_at)))),
      h("tr", {}, h("td", {}, "Created"), runs.map((run) => h("td", {}, time(run.created_at)))),
    ], ""),
    h("h2", {}, "Parameters"),
    table(header, rowsOf(paramNames, (run, name) => ((run.runtime_config || {}).parameters || {})[name]), "No parameters.", { id: "compare-parameters" }),
    h("h2", {}, "Metrics"),
    table(header.map((cell) => (cell instanceof Node ? cell.cloneNode(true) : cell)), rowsOf(metricNames, (run, name) => (metricsOf.get(run.run_id) || {})[name]), "None of these runs logged system.Metrics.", { id: "compare-metrics" }),
    h("p", { class: "muted" }, "Rows whose values differ are marked."));
}

// ---- experiments ----------------------------------------------------------

const EXPERIMENT_VERBS = {
  archive: (id) => api(`/experiments/${enc(id)}:archive`, null, { method: "POST" }),
  restore: (id) => api(`/experiments/${enc(id)}:unarchive`, null, { method: "POST" }),
  delete: (id) => api(`/experiments/${enc(id)}`, null, { method: "DELETE" }),
};

function experimentButtons(experiment, after) {
  const archived = experiment.storage_state === "ARCHIVED";
  const verb = archived ? "restore" : "archive";
  return [
    button(archived ? "Restore" : "Archive", (event) => act(event.target, archived ? "Restore" : "Archive",
      () => EXPERIMENT_VERBS[verb](experiment.experiment_id), after), { "data-action": verb }),
    button("Delete", async (event) => {
      if (!(await confirmAction(`Delete experiment "${experiment.display_name}"?`, "Delete"))) return;
      await act(event.target, "Delete", () => EXPERIMENT_VERBS.delete(experiment.experiment_id), () => go("/experiments"));
    }, { "data-action": "delete" }),
  ];
}

function newExperimentForm() {
  const name = h("input", { id: "experiment-name-input", required: true });
  const description = h("input", { id: "experiment-description" });
  const problem = h("div", { role: "alert" });
  return h("details", { class: "card", id: "new-experiment" }, h("summary", {}, "New experiment"),
    h("form", { class: "toolbar", onsubmit: async (event) => {
      event.preventDefault();
      problem.replaceChildren();
      try {
        const created = await api("/experiments", null, { method: "POST", body: { display_name: name.value.trim(), description: description.value.trim() } });
        go(`/experiments/details/${created.experiment_id}`);
      } catch (error) {
        problem.replaceChildren(h("div", { class: "error" }, `Could not create it: ${error.message}`));
      }
    } },
    h("label", { for: "experiment-name-input" }, "Name", name),
    h("label", { for: "experiment-description" }, "Description", description),
    h("button", { type: "submit", id: "create-experiment" }, "Create")), problem);
}

async function experimentsPage(query) {
  const heading = h("h1", {}, "Experiments");
  const showing = h("select", { id: "storage-filter", "aria-label": "Showing" },
    h("option", { value: "" }, "Active"), h("option", { value: "1", selected: !!query.archived }, "Archived"));
  showing.addEventListener("change", () => go("/experiments", { archived: showing.value }));
  render(heading, h("div", { class: "loading" }, "Loading experiments…"));
  const body = await api("/experiments", { page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc",
    filter: predicateFilter([{ key: "storage_state", operation: "EQUALS", string_value: query.archived ? "ARCHIVED" : "AVAILABLE" }]) });
  const rows = (body.experiments || []).map((e) => h("tr", { "data-experiment-id": e.experiment_id },
    h("td", {}, h("a", { href: experimentHref(e.experiment_id) }, e.display_name || e.experiment_id)),
    h("td", { class: "wide" }, e.description || ""),
    h("td", { class: "wide" }, time(e.created_at)),
    h("td", { class: "actions" }, experimentButtons(e, () => route()))));
  render(heading, newExperimentForm(), h("div", { class: "toolbar" }, h("label", { for: "storage-filter" }, "Showing", showing)),
    table([["Name"], ["Description", "wide"], ["Created", "wide"], ["Actions"]], rows,
      query.archived ? "No archived experiments." : "No experiments yet."),
    pager("/experiments", query, body.next_page_token));
}

async function experimentDetailsPage(id, query) {
  render(h("div", { class: "loading" }, "Loading experiment…"));
  const path = `/experiments/details/${id}`;
  let experiment, list;
  try {
    [experiment, list] = await Promise.all([
      api(`/experiments/${enc(id)}`),
      liveRuns({ experiment_id: id, page_size: PAGE_SIZE, page_token: query.token, sort_by: sortBy(query) },
        query, path, "This experiment has no runs."),
    ]);
  } catch (error) {
    showError(error, "Experiment " + id);
    return;
  }
  render(h("h1", {}, h("span", { id: "experiment-name" }, experiment.display_name || id)),
    h("div", { class: "actions" }, experimentButtons(experiment, () => route())),
    h("div", { class: "card" }, facts([
      ["Experiment ID", experiment.experiment_id, "mono"],
      ["Description", experiment.description || ""],
      ["Created", time(experiment.created_at)],
      ["Storage", experiment.storage_state === "ARCHIVED" ? "archived" : "available"],
    ])),
    h("h2", {}, "Runs", " ", list.liveNote), list.nodes);
}

// ---- pipelines --------------------------------------------------------------

function uploadForm(id, label, makeUrl, after) {
  const file = h("input", { type: "file", id: `${id}-file`, accept: ".yaml,.yml,.json,.zip,.tar.gz,.tgz", required: true });
  const name = h("input", { id: `${id}-name`, placeholder: "from the file when empty" });
  const description = h("input", { id: `${id}-description` });
  const problem = h("div", { role: "alert" });
  const submit = h("button", { type: "submit", id: `${id}-submit` }, "Upload");
  return h("details", { class: "card", id }, h("summary", {}, label),
    h("form", { class: "toolbar", onsubmit: async (event) => {
      event.preventDefault();
      problem.replaceChildren();
      if (!file.files.length) {
        problem.replaceChildren(h("div", { class: "error" }, "Choose a pipeline file first."));
        return;
      }
      const data = new FormData();
      data.append("uploadfile", file.files[0], file.files[0].name);
      submit.disabled = true;
      try {
        const created = await api(makeUrl(name.value.trim() || file.files[0].name.replace(/\.(ya?ml|json|zip|tar\.gz|tgz)$/i, ""), description.value.trim()), null,
          { method: "POST", body: data });
        after(created);
      } catch (error) {
        problem.replaceChildren(h("div", { class: "error" }, `The upload was refused: ${error.message}`));
      } finally {
        submit.disabled = false;
      }
    } },
    h("label", { for: `${id}-file` }, "Pipeline file", file),
    h("label", { for: `${id}-name` }, "Name", name),
    h("label", { for: `${id}-description` }, "Description", description),
    submit), problem);
}

// In multi-user mode with a namespace chosen, the page shows either that namespace's
// own pipelines (the default, as upstream's "Private" tab) or the shared ones, and
// uploads land where it shows; one request either way.
async function pipelinesPage(query) {
  render(h("h1", {}, "Pipelines"), h("div", { class: "loading" }, "Loading pipelines…"));
  const namespace = currentNamespace();
  const scope = namespace && query.scope !== "shared" ? namespace : "";
  const body = await api("/pipelines", { page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc", namespace: scope });
  const rows = (body.pipelines || []).map((p) => h("tr", { "data-pipeline-id": p.pipeline_id },
    h("td", {}, h("a", { href: pipelineHref(p.pipeline_id) }, p.display_name || p.pipeline_id)),
    h("td", { class: "wide" }, p.description || ""),
    h("td", { class: "wide" }, time(p.created_at))));
  const upload = uploadForm("upload-pipeline", scope ? `Upload a pipeline to ${scope}` : "Upload a pipeline",
    (name, description) => "/pipelines/upload" + queryString({ name, display_name: name, description, namespace: scope }),
    (created) => go(`/pipelines/details/${created.pipeline_id}`));
  const tabs = namespace
    ? h("div", { class: "tabs", role: "tablist", "aria-label": "Pipelines of" },
      [[namespace, "namespace", `Namespace ${namespace}`], ["", "shared", "Shared"]].map(([of, id, label]) =>
        h("button", { role: "tab", id: `pipelines-${id}`, "aria-selected": of === scope ? "true" : "false",
          onclick: () => go("/pipelines", { scope: id }) }, label)))
    : null;
  const empty = scope ? `No pipelines in ${scope} yet.` : "No pipelines yet.";
  render(h("h1", {}, "Pipelines"), tabs, upload,
    table([["Name"], ["Description", "wide"], ["Created", "wide"]], rows, empty),
    pager("/pipelines", query, body.next_page_token));
}

async function pipelineDetailsPage(id, query) {
  render(h("div", { class: "loading" }, "Loading pipeline…"));
  let pipeline, versions;
  try {
    [pipeline, versions] = await Promise.all([
      api(`/pipelines/${enc(id)}`),
      api(`/pipelines/${enc(id)}/versions`, { page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc" }),
    ]);
  } catch (error) {
    showError(error, "Pipeline " + id);
    return;
  }
  const list = versions.pipeline_versions || [];
  const rows = list.map((v) => h("tr", { "data-version-id": v.pipeline_version_id },
    h("td", {}, h("a", { href: versionHref(id, v.pipeline_version_id) }, v.display_name || v.pipeline_version_id)),
    h("td", { class: "wide" }, v.description || ""),
    h("td", { class: "wide" }, time(v.created_at)),
    h("td", { class: "actions" },
      h("a", { class: "button", href: `#/runs/new?pipeline=${enc(id)}&version=${enc(v.pipeline_version_id)}` }, "Create run"))));
  const upload = uploadForm("upload-version", "Upload a new version",
    (name, description) => "/pipelines/upload_version" + queryString({ pipelineid: id, name, display_name: name, description }),
    (created) => go(`/pipelines/details/${id}/version/${created.pipeline_version_id}`));
  const remove = button("Delete pipeline", async (event) => {
    const question = list.length
      ? `Delete pipeline "${pipeline.display_name}" and its ${list.length}${versions.next_page_token ? "+" : ""} version(s)?`
      : `Delete pipeline "${pipeline.display_name}"?`;
    if (!(await confirmAction(question, "Delete"))) return;
    await act(event.target, "Delete pipeline", () => api(`/pipelines/${enc(id)}`, { cascade: "true" }, { method: "DELETE" }), () => go("/pipelines"));
  }, { id: "delete-pipeline" });
  render(h("h1", {}, h("span", { id: "pipeline-name" }, pipeline.display_name || id)),
    h("div", { class: "actions" }, remove),
    h("div", { class: "card" }, facts([
      ["Pipeline ID", pipeline.pipeline_id, "mono"],
      ["Description", pipeline.description || ""],
      ["Created", time(pipeline.created_at)],
    ])),
    h("h2", {}, "Versions"), upload,
    table([["Version"], ["Description", "wide"], ["Created", "wide"], ["Actions"]], rows, "This pipeline has no versions."),
    pager(`/pipelines/details/${id}`, query, versions.next_page_token));
}

// The DAG of a spec component as graph nodes: groups for sub-DAGs, loops and
// conditions, edges from `dependentTasks` and data producers.
function specNodes(spec, dag) {
  return Object.entries((dag && dag.tasks) || {}).sort(([a], [b]) => a.localeCompare(b)).map(([name, task]) => {
    const component = (spec.components || {})[(task.componentRef || {}).name] || {};
    const after = new Set(task.dependentTasks || []);
    const inputs = task.inputs || {};
    for (const p of Object.values(inputs.parameters || {})) {
      if (p.taskOutputParameter) after.add(p.taskOutputParameter.producerTask);
      if (p.taskFinalStatus) after.add(p.taskFinalStatus.producerTask);
    }
    for (const a of Object.values(inputs.artifacts || {})) if (a.taskOutputArtifact) after.add(a.taskOutputArtifact.producerTask);
    const loop = task.parameterIterator || task.artifactIterator;
    const condition = task.triggerPolicy && task.triggerPolicy.condition;
    const kind = loop ? "loop" : component.dag ? (condition ? "condition" : "sub-pipeline") : condition ? "conditional" : "container";
    return { id: name, label: (task.taskInfo && task.taskInfo.name) || name, sub: kind, state: "", after: [...after], group: !!component.dag, component };
  });
}

async function versionDetailsPage(pipelineId, versionId) {
  render(h("div", { class: "loading" }, "Loading pipeline version…"));
  let version;
  try {
    version = await api(`/pipelines/${enc(pipelineId)}/versions/${enc(versionId)}`);
  } catch (error) {
    showError(error, "Pipeline version " + versionId);
    return;
  }
  const spec = version.pipeline_spec || {};
  const inner = innerSpec(spec);
  const stack = [["pipeline", inner.root || {}]];
  const graphHost = h("div", { class: "graph", id: "graph" });
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Graph level" });
  let selected = "";
  const draw = () => {
    const nodes = specNodes(inner, stack[stack.length - 1][1].dag);
    crumbs.replaceChildren(...stack.map(([label], index) => [index ? " › " : "", index === stack.length - 1
      ? h("span", { "aria-current": "location" }, label)
      : h("a", { href: "#", onclick: (event) => { event.preventDefault(); stack.length = index + 1; draw(); } }, label)]).flat());
    if (!nodes.length) {
      graphHost.replaceChildren(h("div", { class: "empty" }, "No tasks."));
      return;
    }
    drawGraph(graphHost, nodes, {
      selected,
      onSelect: (id) => { selected = id; draw(); },
      onOpen: (id) => {
        const node = nodes.find((candidate) => candidate.id === id);
        if (node && node.component.dag) { stack.push([node.label, node.component]); selected = ""; draw(); }
      },
    });
  };
  const parameters = ((inner.root || {}).inputDefinitions || {}).parameters || {};
  const remove = button("Delete version", async (event) => {
    if (!(await confirmAction(`Delete version "${version.display_name}"?`, "Delete"))) return;
    await act(event.target, "Delete version", () => api(`/pipelines/${enc(pipelineId)}/versions/${enc(versionId)}`, null, { method: "DELETE" }),
      () => go(`/pipelines/details/${pipelineId}`));
  }, { id: "delete-version" });
  render(h("h1", {}, h("span", { id: "version-name" }, version.display_name || versionId)),
    h("div", { class: "actions" },
      h("a", { class: "button", id: "version-create-run", href: `#/runs/new?pipeline=${enc(pipelineId)}&version=${enc(versionId)}` }, "Create run"),
      h("a", { class: "button", href: `#/runs/new?pipeline=${enc(pipelineId)}&version=${enc(versionId)}&recurring=1` }, "Create recurring run"),
      remove),
    h("div", { class: "card" }, facts([
      ["Pipeline", h("a", { href: pipelineHref(pipelineId) }, pipelineId)],
      ["Version ID", version.pipeline_version_id, "mono"],
      ["Pipeline name", (inner.pipelineInfo && inner.pipelineInfo.name) || "", "mono"],
      ["Description", version.description || ""],
      ["Created", time(version.created_at)],
    ])),
    h("h2", {}, "Graph"), crumbs, graphHost,
    h("h2", {}, "Parameters"),
    table([["Name"], ["Type"], ["Default"]], Object.entries(parameters).sort(([a], [b]) => a.localeCompare(b)).map(([name, p]) =>
      h("tr", {}, h("td", { class: "mono" }, name), h("td", {}, TYPE_LABELS[p.parameterType] || p.parameterType || ""),
        h("td", { class: "mono" }, value(p.defaultValue)))), "No parameters."),
    h("h2", {}, "Tasks"),
    table([["Task"], ["Component"], ["After"]], Object.entries((inner.root && inner.root.dag && inner.root.dag.tasks) || {})
      .sort(([a], [b]) => a.localeCompare(b)).map(([name, task]) => h("tr", {},
        h("td", { class: "mono" }, name),
        h("td", { class: "mono" }, (task.componentRef && task.componentRef.name) || ""),
        h("td", { class: "mono" }, (task.dependentTasks || []).join(", ")))), "The spec has no root DAG tasks.", { id: "spec-tasks" }),
    h("h2", {}, "Spec"),
    h("pre", { class: "spec", id: "spec", tabindex: "0" }, JSON.stringify(spec, null, 2)));
  draw();
}

// ---- recurring runs -----------------------------------------------------------

function triggerText(trigger) {
  if (!trigger) return "";
  if (trigger.cron_schedule) return `cron ${trigger.cron_schedule.cron}`;
  if (trigger.periodic_schedule) return `every ${seconds(Number(trigger.periodic_schedule.interval_second))}`;
  return "";
}

const RECURRING_VERBS = {
  enable: (id) => api(`/recurringruns/${enc(id)}:enable`, null, { method: "POST" }),
  disable: (id) => api(`/recurringruns/${enc(id)}:disable`, null, { method: "POST" }),
  delete: (id) => api(`/recurringruns/${enc(id)}`, null, { method: "DELETE" }),
};

function recurringButtons(recurring, after, afterDelete) {
  const enabled = recurring.status === "ENABLED";
  const verb = enabled ? "disable" : "enable";
  return [
    button(enabled ? "Disable" : "Enable", (event) => act(event.target, enabled ? "Disable" : "Enable",
      () => RECURRING_VERBS[verb](recurring.recurring_run_id), after), { "data-action": verb }),
    button("Delete", async (event) => {
      if (!(await confirmAction(`Delete recurring run "${recurring.display_name}"? Runs it fired stay.`, "Delete"))) return;
      await act(event.target, "Delete", () => RECURRING_VERBS.delete(recurring.recurring_run_id), afterDelete || after);
    }, { "data-action": "delete" }),
  ];
}

async function recurringRunsPage(query) {
  render(h("h1", {}, "Recurring runs"), h("div", { class: "loading" }, "Loading recurring runs…"));
  const body = await api("/recurringruns", { page_size: PAGE_SIZE, page_token: query.token, sort_by: "created_at desc" });
  const rows = (body.recurringRuns || body.recurring_runs || []).map((r) => h("tr", { "data-recurring-run-id": r.recurring_run_id },
    h("td", {}, h("a", { href: recurringHref(r.recurring_run_id) }, r.display_name || r.recurring_run_id)),
    h("td", {}, h("span", { class: "state " + (r.status === "ENABLED" ? "SUCCEEDED" : "SKIPPED") }, r.status === "ENABLED" ? "ENABLED" : "DISABLED")),
    h("td", { class: "wide" }, triggerText(r.trigger)),
    h("td", { class: "wide" }, time(r.created_at)),
    h("td", { class: "actions" }, recurringButtons(r, () => route()))));
  render(h("h1", {}, "Recurring runs"),
    h("p", { class: "muted" }, "Create one from a pipeline version's page."),
    table([["Name"], ["Status"], ["Trigger", "wide"], ["Created", "wide"], ["Actions"]], rows, "No recurring runs yet."),
    pager("/recurringruns", query, body.next_page_token));
}

async function recurringRunDetailsPage(id, query) {
  render(h("div", { class: "loading" }, "Loading recurring run…"));
  let recurring, list;
  const path = `/recurringruns/details/${id}`;
  try {
    [recurring, list] = await Promise.all([
      api(`/recurringruns/${enc(id)}`),
      liveRuns({ page_size: PAGE_SIZE, page_token: query.token, sort_by: sortBy(query),
        filter: predicateFilter([{ key: "recurring_run_id", operation: "EQUALS", string_value: id }]) },
      query, path, "It has fired no runs yet."),
    ]);
  } catch (error) {
    showError(error, "Recurring run " + id);
    return;
  }
  const editHost = h("div", {});
  const edit = button("Edit", async () => {
    editHost.replaceChildren(h("div", { class: "loading" }, "Loading the pipeline's parameters…"));
    try {
      editHost.replaceChildren(await recurringEditForm(recurring));
    } catch (error) {
      editHost.replaceChildren(errorBox(error, "The pipeline"));
    }
  }, { id: "edit-recurring" });
  render(h("h1", {}, h("span", { id: "recurring-name" }, recurring.display_name || id),
    h("span", { class: "state " + (recurring.status === "ENABLED" ? "SUCCEEDED" : "SKIPPED"), id: "recurring-status" },
      recurring.status === "ENABLED" ? "ENABLED" : "DISABLED")),
  h("div", { class: "actions" }, edit, recurringButtons(recurring, () => route(), () => go("/recurringruns"))),
  h("div", { class: "card" }, facts([
    ["Recurring run ID", recurring.recurring_run_id, "mono"],
    ["Trigger", triggerText(recurring.trigger), "mono"],
    ["Runs at once", String(recurring.max_concurrency || 1)],
    ["Catch up", recurring.no_catchup ? "no" : "yes"],
    ["Pipeline version", versionLink(recurring.pipeline_version_reference) || (recurring.pipeline_spec ? "inline spec" : "")],
    ["Experiment", recurring.experiment_id ? h("a", { href: experimentHref(recurring.experiment_id) }, recurring.experiment_id) : ""],
    ["Description", recurring.description || ""],
    ["Created", time(recurring.created_at)],
    ["Updated", time(recurring.updated_at)],
  ])),
  editHost,
  h("h2", {}, "Parameters"),
  table([["Name"], ["Value"]], parameterRows((recurring.runtime_config || {}).parameters), "No parameters."),
  h("h2", {}, "Runs it fired", " ", list.liveNote), list.nodes);
}

// Edits a recurring run in place (PATCH): name, description, trigger, concurrency,
// catch-up and parameters typed by its pipeline's spec.
async function recurringEditForm(recurring) {
  const reference = recurring.pipeline_version_reference;
  const spec = reference && reference.pipeline_version_id
    ? (await api(`/pipelines/${enc(reference.pipeline_id)}/versions/${enc(reference.pipeline_version_id)}`)).pipeline_spec
    : recurring.pipeline_spec;
  const name = h("input", { id: "edit-name", value: recurring.display_name || "" });
  const description = h("input", { id: "edit-description", value: recurring.description || "" });
  const trigger = triggerInputs(recurring.trigger);
  const maxConcurrency = h("input", { id: "max-concurrency", type: "number", min: "1", max: "10", value: String(recurring.max_concurrency || 1) });
  const catchup = h("input", { type: "checkbox", id: "catchup", checked: !recurring.no_catchup });
  const parameters = parameterInputs(spec, (recurring.runtime_config || {}).parameters || {});
  const problem = h("div", { role: "alert", id: "form-error" });
  return h("form", { class: "card form", id: "recurring-edit", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    let body;
    try {
      body = { display_name: name.value.trim(), description: description.value.trim(), trigger: trigger.read(),
        max_concurrency: String(Number(maxConcurrency.value) || 1), no_catchup: !catchup.checked,
        runtime_config: { ...(recurring.runtime_config || {}), parameters: parameters.read() } };
      if (!body.display_name) throw new Error("the name is empty");
    } catch (error) {
      problem.replaceChildren(h("div", { class: "error" }, error.message));
      return;
    }
    try {
      await api(`/recurringruns/${enc(recurring.recurring_run_id)}`, null, { method: "PATCH", body });
      await route();
      notice("Saved.");
    } catch (error) {
      problem.replaceChildren(h("div", { class: "error" }, `The server refused it: ${error.message}`));
    }
  } },
  h("h2", {}, "Edit"),
  h("label", { for: "edit-name", class: "field" }, "Name", name),
  h("label", { for: "edit-description", class: "field" }, "Description", description),
  trigger.nodes,
  h("label", { for: "max-concurrency", class: "field" }, "Runs at once (1–10)", maxConcurrency),
  h("label", { for: "catchup", class: "field inline" }, catchup, "Catch up on missed ticks"),
  h("fieldset", {}, h("legend", {}, "Parameters"), parameters.nodes),
  problem, h("button", { type: "submit", id: "save-recurring" }, "Save"));
}

// ---- routing --------------------------------------------------------------------

function notFound(hash) {
  render(h("h1", {}, "Page not found"),
    h("p", {}, `Nothing is at ${hash}. `, h("a", { href: "#/runs" }, "Go to the runs.")));
}

const ROUTES = [
  [/^\/runs\/new$/, (m, q) => newRunPage(q), "runs"],
  [/^\/runs\/details\/([^/?]+)$/, (m, q) => runDetailsPage(decodeURIComponent(m[1]), q), "runs"],
  [/^\/runs$/, (m, q) => runsPage(q), "runs"],
  [/^\/compare$/, (m, q) => comparePage(q), "runs"],
  [/^\/experiments\/details\/([^/?]+)$/, (m, q) => experimentDetailsPage(decodeURIComponent(m[1]), q), "experiments"],
  [/^\/experiments$/, (m, q) => experimentsPage(q), "experiments"],
  [/^\/pipelines\/details\/([^/?]+)\/version\/([^/?]+)$/,
    (m) => versionDetailsPage(decodeURIComponent(m[1]), decodeURIComponent(m[2])), "pipelines"],
  [/^\/pipelines\/details\/([^/?]+)$/, (m, q) => pipelineDetailsPage(decodeURIComponent(m[1]), q), "pipelines"],
  [/^\/pipelines$/, (m, q) => pipelinesPage(q), "pipelines"],
  [/^\/recurringruns\/details\/([^/?]+)$/, (m, q) => recurringRunDetailsPage(decodeURIComponent(m[1]), q), "recurringruns"],
  [/^\/recurringruns$/, (m, q) => recurringRunsPage(q), "recurringruns"],
];

const SECTION_TITLES = { runs: "Runs", experiments: "Experiments", pipelines: "Pipelines", recurringruns: "Recurring runs" };

async function route() {
  generation += 1;
  for (const cleanup of cleanups.splice(0)) cleanup();
  notice("");
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, query] = hash.split("?");
  for (const [pattern, view, section] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const link of document.querySelectorAll("nav a[data-section]")) {
      link.classList.toggle("current", link.dataset.section === section);
      if (link.dataset.section === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = "kfpd · " + SECTION_TITLES[section];
    try {
      await view(match, Object.fromEntries(new URLSearchParams(query || "").entries()));
    } catch (error) {
      showError(error, SECTION_TITLES[section]);
    }
    markRendered();
    return;
  }
  notFound(location.hash);
}

// In multi-user mode, a namespace field in the header; changing it shows the
// current view again in the new namespace.
function namespacePicker() {
  const input = h("input", { id: "namespace", name: "namespace", value: currentNamespace(), autocomplete: "on",
    placeholder: "namespace", spellcheck: "false", size: 16 });
  const form = h("form", { class: "namespace", role: "search", "aria-label": "Namespace", onsubmit: (event) => {
    event.preventDefault();
    const chosen = input.value.trim();
    if (chosen === currentNamespace()) return;
    setNamespace(chosen);
    route();
  } }, h("label", { for: "namespace" }, "Namespace"), input, h("button", { type: "submit", id: "namespace-set" }, "Show"));
  input.addEventListener("change", () => form.requestSubmit());
  return form;
}

function start() {
  // The server marks the page with its mode: no request before the first view.
  const mark = document.querySelector('meta[name="kfpd-multi-user"]');
  multiUser = mark !== null && mark.getAttribute("content") === "true";
  if (multiUser) document.querySelector("header.top").append(namespacePicker());
  route();
}

window.addEventListener("hashchange", route);
// A page left for another (kept in the browser's back/forward cache, or closing)
// gives up its event streams: over plain HTTP a browser opens at most six
// connections to a host, and streams of pages nobody sees would hold them (the
// seventh page waited about a minute, until the browser let a cached page go).
// Shown again from that cache, the page draws its view anew.
window.addEventListener("pagehide", () => {
  generation += 1;
  for (const cleanup of cleanups.splice(0)) cleanup();
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted) route();
});
window.addEventListener("DOMContentLoaded", () => {
  // The skip link moves the keyboard past the header without changing the route.
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("page").focus();
  });
  start();
});
