// Shared helpers of the kfpd web UI: building elements, calling the REST API,
// formatting, dialogs. Everything user-controlled is inserted as text, never as HTML.
"use strict";

const API = "/apis/v2beta1";
const PAGE_SIZE = 20;
// A request still unanswered after this long is abandoned.
const REQUEST_TIMEOUT_MS = 15000;
const TERMINAL = new Set(["SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"]);
const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED", "PAUSED"];

function h(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.setAttribute("class", value);
    // Through the CSSOM: the Content-Security-Policy blocks style attributes.
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
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

function queryString(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const text = params.toString();
  return text ? "?" + text : "";
}

// One call to the REST API. `body` is sent as JSON, or as is when it is FormData.
async function api(path, query, options) {
  const { method = "GET", body } = options || {};
  const init = { method, headers: { accept: "application/json" }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const response = await fetch(API + path + queryString(query), init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (_) {
    parsed = null;
  }
  if (!response.ok) {
    const message = parsed && (parsed.message || parsed.error_message)
      ? (parsed.message || parsed.error_message)
      : (text.trim() || response.status + " " + response.statusText);
    throw new ApiError(response.status, message);
  }
  return parsed || {};
}

const EPOCH_YEAR = 1971;

function validDate(text) {
  if (!text) return null;
  const date = new Date(text);
  if (isNaN(date) || date.getUTCFullYear() < EPOCH_YEAR) return null;
  return date;
}

function time(text) {
  const date = validDate(text);
  return date ? date.toLocaleString() : "";
}

function seconds(total) {
  let rest = Math.max(0, Math.round(total));
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  rest -= minutes * 60;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${rest}s`;
  return `${rest}s`;
}

function duration(start, end) {
  const from = validDate(start);
  if (!from) return "";
  const to = validDate(end);
  return seconds(((to ? to.getTime() : Date.now()) - from.getTime()) / 1000);
}

function state(value) {
  const name = value || "RUNTIME_STATE_UNSPECIFIED";
  const label = name === "RUNTIME_STATE_UNSPECIFIED" ? "UNKNOWN" : name;
  return h("span", { class: "state " + name, "data-state": name }, label);
}

function table(headers, rows, emptyText, attrs) {
  if (!rows.length) return h("div", { class: "empty card" }, emptyText);
  return h("div", { class: "table-wrap", ...(attrs || {}) },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((header) => header instanceof Node
        ? header
        : h("th", { class: header[1], scope: "col" }, header[0])))),
      h("tbody", {}, rows)));
}

function render(...nodes) {
  const page = document.getElementById("page");
  page.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined && node !== false));
}

function errorBox(error, what) {
  const message = error instanceof ApiError && error.status === 404
    ? `${what} was not found (it may have been deleted).`
    : `Could not load ${what.toLowerCase()}: ${error.message}`;
  return h("div", { class: "error", role: "alert" }, message);
}

function showError(error, what) {
  render(errorBox(error, what));
}

function value(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([term, detail, cls]) =>
    [h("dt", {}, term), h("dd", { class: cls }, detail)]));
}

function go(path, query) {
  location.hash = "#" + path + queryString(Object.fromEntries(Object.entries(query || {}).filter(([, v]) => v)));
}

const enc = encodeURIComponent;
const runHref = (id) => `#/runs/details/${enc(id)}`;
const experimentHref = (id) => `#/experiments/details/${enc(id)}`;
const pipelineHref = (id) => `#/pipelines/details/${enc(id)}`;
const versionHref = (pid, vid) => `#/pipelines/details/${enc(pid)}/version/${enc(vid)}`;
const recurringHref = (id) => `#/recurringruns/details/${enc(id)}`;

// A message at the top of the page that stays until the next navigation.
function notice(text, kind) {
  const box = document.getElementById("notice");
  if (!box) return;
  box.className = "notice " + (kind || "ok");
  box.textContent = text;
  box.hidden = !text;
}

// Asks before a destructive action; resolves true when confirmed.
function confirmAction(question, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-label": "Confirm" });
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    dialog.append(
      h("p", {}, question),
      h("div", { class: "buttons" },
        h("button", { type: "button", onclick: () => close(false) }, "Cancel"),
        h("button", { type: "button", class: "danger", id: "confirm-yes", onclick: () => close(true) }, confirmLabel || "OK")));
    dialog.addEventListener("cancel", () => close(false));
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("#confirm-yes").focus();
  });
}

// Runs an action from a button: disables it meanwhile, reports the outcome.
async function act(button, label, call, after) {
  button.disabled = true;
  try {
    await call();
    if (after) await after();
    notice(label + ": done.");
  } catch (error) {
    notice(`${label} failed: ${error.message}`, "bad");
  } finally {
    button.disabled = false;
  }
}

function button(label, onclick, attrs) {
  return h("button", { type: "button", onclick, ...(attrs || {}) }, label);
}

// Paging keeps the tokens of earlier pages in the fragment ("prev" list).
function pager(path, query, nextToken) {
  const previous = query.prev ? query.prev.split(",") : [];
  const back = () => {
    const tokens = previous.slice();
    const token = tokens.pop();
    go(path, { ...query, token: token === "-" ? "" : token, prev: tokens.join(",") });
  };
  const forward = () => go(path, { ...query, token: nextToken, prev: previous.concat(query.token || "-").join(",") });
  return h("div", { class: "pager" },
    h("button", { onclick: back, disabled: previous.length === 0, "aria-label": "Previous page" }, "‹ Previous"),
    h("span", {}, `Page ${previous.length + 1}`),
    h("button", { onclick: forward, disabled: !nextToken, "aria-label": "Next page" }, "Next ›"));
}

function predicateFilter(predicates) {
  return predicates.length ? JSON.stringify({ predicates }) : "";
}

// The pipeline spec inside a version or run (`pipeline_spec` may wrap it with a
// platform spec).
function innerSpec(spec) {
  if (!spec) return {};
  return spec.pipeline_spec || spec;
}

function decodeBase64(data) {
  const binary = atob(data || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
