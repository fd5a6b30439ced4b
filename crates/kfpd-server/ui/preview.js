// Artifact previews: system.Metrics as a table, system.ClassificationMetrics as a
// confusion matrix and an ROC curve (from the artifact's metadata), and from the
// artifact's bytes (…/artifacts/{name}:read) HTML in a sandboxed frame, Markdown,
// CSV/TSV as a table and anything else as text. Nothing from an artifact runs.
"use strict";

const PREVIEW_BYTES = 256 * 1024;
const TABLE_ROWS = 200;

async function showPreview(host, runId, artifact) {
  const title = artifact.type ? artifact.type.schema_title : "";
  const head = h("div", { class: "preview-head" }, h("strong", {}, artifact.name), " ",
    h("span", { class: "muted" }, title), h("div", { class: "mono muted" }, artifact.uri));
  const metadata = artifact.metadata || {};
  if (title === "system.Metrics") {
    host.replaceChildren(head, metricsTable(metadata));
    return;
  }
  if (title === "system.ClassificationMetrics") {
    host.replaceChildren(head, classification(metadata));
    return;
  }
  if (artifact.state === "DELETED") {
    host.replaceChildren(head, h("div", { class: "empty deleted" },
      `Deleted by retention at ${artifact.deleted_at}: the artifact store no longer holds it; its record and lineage stay.`));
    return;
  }
  host.replaceChildren(head, h("div", { class: "loading" }, "Reading the artifact…"));
  const producer = artifact.producer;
  if (!producer) {
    host.replaceChildren(head, h("div", { class: "empty" }, "No task of this run wrote this artifact, so it cannot be read here."));
    return;
  }
  let bytes;
  try {
    const body = await api(`/runs/${enc(runId)}/nodes/${enc(producer.task_id)}/artifacts/${enc(producer.key || artifact.name)}:read`);
    bytes = decodeBase64(body.data);
  } catch (error) {
    host.replaceChildren(head, h("div", { class: "error", role: "alert" }, `Could not read the artifact: ${error.message}`));
    return;
  }
  host.replaceChildren(head, ...previewOf(title, artifact.uri, bytes),
    Object.keys(metadata).length ? [h("h4", {}, "Metadata"), metricsTable(metadata)] : []);
}

function previewOf(title, uri, bytes) {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    return [h("div", { class: "empty" }, `A directory or compressed file (${bytes.length} bytes); download it through the API to unpack it.`)];
  }
  const cut = bytes.length > PREVIEW_BYTES;
  const text = new TextDecoder("utf-8", { fatal: false }).decode(cut ? bytes.slice(0, PREVIEW_BYTES) : bytes);
  const note = cut ? h("div", { class: "muted" }, `First ${PREVIEW_BYTES} of ${bytes.length} bytes.`) : null;
  const lower = uri.toLowerCase();
  if (title === "system.HTML" || lower.endsWith(".html") || lower.endsWith(".htm")) {
    // No scripts, no same-origin access, no forms: the frame only shows the page.
    return [h("iframe", { class: "html-preview", sandbox: "", srcdoc: text, title: "HTML artifact" }), note];
  }
  if (title === "system.Markdown" || lower.endsWith(".md")) return [markdown(text), note];
  const delimiter = lower.endsWith(".tsv") ? "\t" : lower.endsWith(".csv") ? "," : sniffDelimiter(text);
  if (delimiter) return [delimitedTable(text, delimiter), note];
  return [h("pre", { class: "log text-preview", tabindex: "0" }, text), note];
}

// A delimiter when the first lines all split into the same number (2+) of fields.
function sniffDelimiter(text) {
  const lines = text.split("\n").filter((line) => line.trim()).slice(0, 10);
  if (lines.length < 2) return "";
  for (const delimiter of [",", "\t"]) {
    const widths = new Set(lines.map((line) => splitRow(line, delimiter).length));
    if (widths.size === 1 && !widths.has(1)) return delimiter;
  }
  return "";
}

// One CSV row; quoted fields may hold the delimiter and doubled quotes.
function splitRow(line, delimiter) {
  const fields = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') { field += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === delimiter) { fields.push(field); field = ""; }
    else if (c !== "\r") field += c;
  }
  fields.push(field);
  return fields;
}

function delimitedTable(text, delimiter) {
  const lines = text.split("\n").filter((line) => line.trim());
  const [header, ...rows] = lines.map((line) => splitRow(line, delimiter));
  const shown = rows.slice(0, TABLE_ROWS);
  return h("div", { class: "csv-preview" },
    table((header || []).map((cell) => [cell]), shown.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell)))), "No rows."),
    rows.length > TABLE_ROWS ? h("div", { class: "muted" }, `First ${TABLE_ROWS} of ${rows.length} rows.`) : null);
}

function metricsTable(metadata) {
  const rows = Object.entries(metadata).map(([key, v]) => h("tr", {}, h("td", { class: "mono" }, key), h("td", { class: "mono" }, value(v))));
  return h("div", { class: "metrics" }, table([["Metric"], ["Value"]], rows, "No metrics recorded."));
}

function classification(metadata) {
  const parts = [];
  const matrix = metadata.confusionMatrix;
  if (matrix && Array.isArray(matrix.rows)) {
    const categories = (matrix.annotationSpecs || []).map((spec) => spec.displayName || "");
    const rows = matrix.rows.map((row, index) => h("tr", {},
      h("th", { scope: "row" }, categories[index] || String(index)),
      (row.row || []).map((count) => h("td", { class: "count" }, String(count)))));
    parts.push(h("h4", {}, "Confusion matrix (rows: actual, columns: predicted)"),
      h("div", { class: "table-wrap confusion" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, ""), categories.map((name) => h("th", { scope: "col" }, name)))),
        h("tbody", {}, rows))));
  }
  const points = Array.isArray(metadata.confidenceMetrics) ? metadata.confidenceMetrics : [];
  if (points.length) parts.push(h("h4", {}, "ROC curve"), rocCurve(points));
  if (!parts.length) parts.push(metricsTable(metadata));
  return h("div", { class: "classification" }, parts);
}

function rocCurve(points) {
  const size = 240;
  const pad = 30;
  const sorted = points
    .map((p) => [Number(p.falsePositiveRate) || 0, Number(p.recall) || 0])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const x = (v) => pad + v * size;
  const y = (v) => pad + (1 - v) * size;
  const line = sorted.map(([fpr, tpr]) => `${x(fpr).toFixed(1)},${y(tpr).toFixed(1)}`).join(" ");
  return h("svg:svg", { class: "roc", viewBox: `0 0 ${size + pad * 2} ${size + pad * 2}`, width: size + pad * 2, height: size + pad * 2,
    role: "img", "aria-label": `ROC curve of ${sorted.length} thresholds` },
  h("svg:rect", { x: pad, y: pad, width: size, height: size, class: "frame" }),
  h("svg:line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), class: "chance" }),
  h("svg:polyline", { points: line, class: "curve" }),
  h("svg:text", { x: pad + size / 2, y: size + pad * 2 - 6, "text-anchor": "middle" }, "false positive rate"),
  h("svg:text", { x: 10, y: pad + size / 2, transform: `rotate(-90 10 ${pad + size / 2})`, "text-anchor": "middle" }, "true positive rate"));
}

// Markdown's common parts (headings, lists, code blocks, quotes, paragraphs, inline
// code, bold, italic, links) as DOM nodes; no HTML passes through.
function markdown(text) {
  const root = h("div", { class: "markdown" });
  const lines = text.replace(/\r/g, "").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].startsWith("```")) code.push(lines[i++]);
      i += 1;
      root.append(h("pre", {}, h("code", {}, code.join("\n"))));
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      root.append(h("h" + Math.min(6, heading[1].length + 2), {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s*([-*+]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = h(ordered ? "ol" : "ul", {});
      while (i < lines.length && /^\s*([-*+]|\d+\.)\s+/.test(lines[i])) {
        list.append(h("li", {}, inline(lines[i].replace(/^\s*([-*+]|\d+\.)\s+/, ""))));
        i += 1;
      }
      root.append(list);
      continue;
    }
    if (line.startsWith(">")) {
      const quote = [];
      while (i < lines.length && lines[i].startsWith(">")) quote.push(lines[i++].replace(/^>\s?/, ""));
      root.append(h("blockquote", {}, inline(quote.join(" "))));
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|```|>|\s*([-*+]|\d+\.)\s)/.test(lines[i])) paragraph.push(lines[i++]);
    root.append(h("p", {}, inline(paragraph.join(" "))));
  }
  return root;
}

function inline(text) {
  const parts = [];
  const pattern = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*]+\*|_[^_]+_)|(\[[^\]]+\]\([^)\s]+\))/g;
  let last = 0;
  let match;
  while ((match = pattern.exec(text))) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    const token = match[0];
    if (match[1]) parts.push(h("code", {}, token.slice(1, -1)));
    else if (match[2]) parts.push(h("strong", {}, token.slice(2, -2)));
    else if (match[3]) parts.push(h("em", {}, token.slice(1, -1)));
    else {
      const [, label, href] = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(token);
      parts.push(/^https?:\/\//.test(href) ? h("a", { href, rel: "noopener noreferrer", target: "_blank" }, label) : label);
    }
    last = match.index + token.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}
