// A box's output in the selected run (GET /api/runs/{id}/nodes/{node}), drawn by its kind: images, a
// transformation, a model's card, scores, an evaluation, a sweep's trials. Never a raw dump of the answer.
import { api, runFile, url } from "./api.js";
import { el, fill, pairs, table, tabs } from "./dom.js";
import { number, percent, readable, shown } from "./labels.js";
import { reliabilityChart } from "./charts.js";
import { sweepView } from "./sweep.js";

/** Fill `container` with the output of `node` in run `runId`. */
const asked = new WeakMap(); // container -> the latest request's key: an older answer is dropped

export async function showOutput(container, runId, node) {
  const key = `${runId}/${node}/${Date.now()}/${Math.random()}`;
  asked.set(container, key);
  fill(container, el("p", { class: "muted" }, "Loading…"));
  let answer;
  try {
    answer = await api(`/api/runs/${runId}/nodes/${encodeURIComponent(node)}`);
    if (asked.get(container) !== key) return;
  } catch (error) {
    if (asked.get(container) !== key) return;
    const text = error.status === 409 ? `Not produced yet: ${node} has not finished in run #${runId}.` : error.message;
    fill(container, el("p", { class: error.status === 409 ? "muted not-yet" : "error" }, text));
    return;
  }
  const render = RENDERERS[answer?.kind];
  fill(container, render ? render(answer, runId, node) : el("p", { class: "muted" }, `No view for an output of kind "${answer?.kind}".`));
}

const RENDERERS = {
  images: imagesView,
  transform: (a) => el("div", {}, el("h3", {}, "Transformation steps"), pairs(Object.entries(a.steps || {}).map(([k, v]) => [readable(k), shown(v)]))),
  "untrained model": (a) => el("div", {}, el("h3", {}, "Model card"), card(a.card)),
  "trained model": trainedView,
  scores: scoresView,
  evaluation: evaluationView,
  sweep: (a, runId, node) => el("div", {}, sweepView(a), a.status === "done" ? trainedView(a, runId, node, "The best trial's model") : null),
};

function card(entries) {
  return pairs((entries || []).map(([k, v]) => [readable(k), shown(v)]), { class: "pairs card" });
}

/** An image's address: the answer's own URL, or a path of the run's folder. */
function imageSource(runId, item) {
  if (typeof item === "string") return item.startsWith("/") ? item : runFile(runId, item);
  return item.url || (item.path ? runFile(runId, item.path) : null);
}

/** Images (Convert's, or each output of Split): class counts with bars, and thumbnails. */
function imagesView(a, runId) {
  const parts = a.parts ? Object.entries(a.parts) : [[null, a]];
  return el("div", { class: "images-output" }, parts.map(([port, part]) =>
    el("section", { class: "images-part", dataset: { port: port ?? "" } },
      parts.length > 1 ? el("h3", {}, port) : null, imagesPart(part, runId))));
}

function imagesPart(a, runId) {
  const classes = Object.entries(a.classes || {});
  const most = Math.max(1, ...classes.map(([, n]) => n));
  const labeled = a.labeled !== false && classes.length > 0;
  return el("div", {},
    el("p", { class: "summary" }, `${number(a.images)} images`, labeled ? `, ${classes.length} class${classes.length === 1 ? "" : "es"}` : ", unlabeled"),
    classes.length
      ? el("table", { class: "class-counts" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "class"), el("th", { scope: "col" }, "images"), el("th", { scope: "col" }, el("span", { class: "sr-only" }, "share")))),
        el("tbody", {}, classes.map(([name, n]) => el("tr", {},
          el("td", {}, name), el("td", { class: "num" }, number(n)),
          el("td", { class: "bar-cell" }, el("span", { class: "bar", style: { width: `${(100 * n) / most}%` } }))))))
      : null,
    el("div", { class: "thumbs" }, (a.samples || []).map((s) =>
      el("figure", { class: "thumb" },
        el("img", { src: imageSource(runId, s), alt: imageAlt(s.label), loading: "lazy", width: 72, height: 72 }),
        el("figcaption", {}, classesText(s.label))))));
}

/** An image's label as words: one class, or a multi-label image's classes (possibly none). */
function classesText(label) {
  if (!Array.isArray(label)) return label ?? "";
  return label.length ? label.join(", ") : "none";
}

function imageAlt(label) {
  if (Array.isArray(label)) return label.length ? `an image of ${label.join(" and ")}` : "an image of none of the classes";
  return label ? `an image of ${label}` : "an unlabeled image";
}

function trainedView(a, runId, node, title = "Trained model") {
  return el("div", {},
    el("h3", {}, title),
    card(a.card),
    a.classes?.length ? el("p", {}, el("strong", {}, "Classes: "), a.classes.join(", ")) : null,
    el("p", { class: "downloads" },
      el("a", { href: url(`/api/runs/${runId}/download/model`, { node }), download: "" }, "Model directory (zip)"), " · ",
      el("a", { href: url(`/api/runs/${runId}/download/onnx`, { node }), download: "" }, "ONNX")));
}

function scoresView(a, runId, node) {
  const columns = a.columns || [];
  return el("div", {},
    el("p", { class: "summary" }, `${number(a.total ?? (a.rows || []).length)} rows${a.total > (a.rows || []).length ? `, the first ${a.rows.length} shown` : ""} · `,
      el("a", { href: url(`/api/runs/${runId}/download/scores`, { node }), download: "" }, "scores CSV")),
    el("div", { class: "scroll-table" }, table(columns, (a.rows || []).map((row) => row.map(cellText)), { class: "sticky" })));
}

/** A scores cell: numbers (also as text, as a CSV gives them) with 4 significant digits; paths as they are. */
function cellText(value) {
  if (typeof value === "number") return number(value);
  if (typeof value === "string" && /^-?\d+\.\d+(e-?\d+)?$/i.test(value)) return number(Number(value));
  return value ?? "";
}

function evaluationView(a, runId, node) {
  const multilabel = a.metrics?.task === "multilabel";
  return el("div", {},
    tabs(`eval-${node}`, [
      multilabel
        ? { id: "overview", label: "Overview", render: () => multilabelOverview(a.metrics || {}, a.averages || {}, a.per_class || {}) }
        : { id: "overview", label: "Overview", render: () => overview(a.metrics || {}, a.per_class || a.metrics?.per_class || {}) },
      multilabel
        ? { id: "confusion", label: "Per class and co-occurrence", render: () => classConfusions(a.per_class || {}, a.co_occurrence) }
        : { id: "confusion", label: "Confusion matrix", render: () => confusion(a.confusion || a.metrics?.confusion_matrix) },
      { id: "errors", label: "Errors", render: () => errors(a.errors || [], runId) },
      { id: "calibration", label: "Calibration", render: () => calibration(a.calibration ?? a.metrics?.calibration) },
      { id: "explanations", label: "Explanations", render: () => explanations(a.explanations || [], runId) },
    ]),
    el("p", { class: "downloads" }, el("a", { href: url(`/api/runs/${runId}/download/evaluation`, { node }), download: "" }, "Evaluation report (zip)")));
}

/** The macro averages: the library's, or the unweighted mean over the classes (the same thing). */
function macro(m, perClass) {
  if (m.macro_avg) return m.macro_avg;
  const classes = Object.values(perClass);
  if (!classes.length) return null;
  const mean = (key) => classes.reduce((sum, c) => sum + (c[key] ?? 0), 0) / classes.length;
  return { precision: mean("precision"), recall: mean("recall"), f1: mean("f1") };
}

/** A row adder for the headline table: a present value, formatted; absent ones leave no row. */
function rowAdder(rows) {
  return (name, value, format = number) => value !== undefined && value !== null && rows.push([name, format(value)]);
}

/** The headline numbers as a two-column table, then the per-class table (when there is one). */
function overviewOf(rows, perClassTable) {
  return el("div", { class: "overview" },
    el("table", { class: "pairs metrics", id: "metrics-overview" }, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", { class: "num" }, v))))),
    perClassTable ? el("div", {}, el("h4", {}, "Per class"), el("div", { class: "scroll-table" }, perClassTable)) : null);
}

function overview(m, perClassMetrics) {
  const rows = [];
  const averages = { macro_avg: macro(m, perClassMetrics), weighted_avg: m.weighted_avg };
  const add = rowAdder(rows);
  add("Accuracy", m.accuracy, (v) => `${number(v)} (${percent(v)})`);
  add("Top-5 accuracy", m.top5_accuracy);
  for (const [key, title] of [["macro_avg", "Macro"], ["weighted_avg", "Weighted"]])
    for (const part of ["precision", "recall", "f1"]) add(`${title} ${part === "f1" ? "F1" : part}`, averages[key]?.[part]);
  add("Log loss", m.log_loss);
  add("Calibration error (ECE)", m.calibration?.ece);
  add("Images", m.images);
  add("Unscored images", m.unscored);
  add("Imbalance (largest / smallest class)", m.imbalance_ratio);
  const perClass = Object.entries(perClassMetrics || {});
  return overviewOf(rows, perClass.length
    ? table(["class", "precision", "recall", "F1", "images"], perClass.map(([name, c]) => [name, number(c.precision, 3), number(c.recall, 3), number(c.f1, 3), c.support]), { class: "sticky" })
    : null);
}

/** A multi-label model's headline numbers (exact match, Hamming loss, mAP, micro and macro averages) and per class. */
function multilabelOverview(m, averages, perClassMetrics) {
  const rows = [];
  const add = rowAdder(rows);
  add("Exact match (every class right)", m.subset_accuracy, (v) => `${number(v)} (${percent(v)})`);
  add("Hamming loss (decisions wrong)", m.hamming_loss);
  add("Mean average precision (mAP)", m.mean_average_precision);
  for (const [key, title] of [["micro_avg", "Micro"], ["macro_avg", "Macro"]])
    for (const part of ["precision", "recall", "f1"]) add(`${title} ${part === "f1" ? "F1" : part}`, averages[key]?.[part]);
  add("Log loss (per class)", m.log_loss);
  add("Calibration error (ECE)", m.calibration?.ece);
  add("Images", m.images);
  add("Unscored images", m.unscored);
  const perClass = Object.entries(perClassMetrics);
  return overviewOf(rows, perClass.length
    ? table(["class", "precision", "recall", "F1", "average precision", "images"],
      perClass.map(([name, c]) => [name, number(c.precision, 3), number(c.recall, 3), number(c.f1, 3), c.average_precision === null ? "—" : number(c.average_precision, 3), c.support]), { class: "sticky" })
    : null);
}

/** Each class's 2x2 confusion as a table row, and the co-occurrence of true and given classes as a heat table. */
function classConfusions(perClass, coOccurrence) {
  const entries = Object.entries(perClass);
  if (!entries.length) return el("p", { class: "muted" }, "No per-class figures.");
  return el("div", {},
    el("div", { class: "scroll-table" }, table(["class", "given and true (TP)", "given, not true (FP)", "missed (FN)", "rightly not given (TN)"],
      entries.map(([name, c]) => [name, c.confusion?.tp, c.confusion?.fp, c.confusion?.fn, c.confusion?.tn]), { class: "sticky class-confusion" })),
    coOccurrence ? el("h4", {}, "Co-occurrence: true class (rows), class given (columns)") : null,
    coOccurrence ? confusion(coOccurrence, "given") : null);
}

function confusion(c, columns = "predicted") {
  if (!c?.classes?.length) return el("p", { class: "muted" }, "No confusion matrix.");
  if (!c.matrix) return topConfusions(c, columns);
  const most = Math.max(1, ...c.matrix.flat());
  return el("div", { class: "scroll-table" },
    el("table", { class: "confusion", "aria-label": `${columns === "predicted" ? "Confusion matrix" : "Co-occurrence"}: rows are the true class, columns the ${columns} class` },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "corner" }, `true \\ ${columns}`), c.classes.map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, c.matrix.map((row, i) => el("tr", {},
        el("th", { scope: "row" }, c.classes[i]),
        row.map((count, j) => el("td", {
          class: `cell${i === j ? " diagonal" : ""}`,
          style: { "--heat": (count / most).toFixed(3) },
          title: `${c.classes[i]} → ${c.classes[j]}: ${count}`,
        }, String(count))))))));
}

/** Past 100 classes the matrix is too large for a table: the most frequent confusions, by name. */
function topConfusions(c, columns) {
  const top = c.top_confusions || [];
  return el("div", {},
    el("p", {}, `${c.classes.length} classes: too many for a table. The most frequent confusions (confusion_matrix.json holds every non-zero cell):`),
    top.length
      ? table(["true class", `${columns} class`, "images"], top.map((t) => [t.true, t[columns], t.count]))
      : el("p", { class: "muted" }, "None: every image was right."));
}

function errors(list, runId) {
  if (!list.length) return el("p", { class: "muted" }, "No errors: every scored image is right.");
  return el("div", { class: "thumbs errors" }, list.map((e) =>
    el("figure", { class: "thumb error-thumb" },
      imageSource(runId, e) ? el("img", { src: imageSource(runId, e), alt: `${e.true} predicted as ${e.predicted}`, loading: "lazy", width: 96, height: 96 }) : el("div", { class: "no-image" }, "image outside the root"),
      el("figcaption", {}, `${e.true} → ${e.predicted}`, el("br"), percent(e.probability)))));
}

function calibration(c) {
  if (!c) return el("p", { class: "muted" }, "No calibration report (the scores carry no probabilities to calibrate).");
  const bins = (c.bins || []).filter((b) => b.images);
  const chart = el("div", { class: "chart reliability" });
  queueMicrotask(() => reliabilityChart(chart, bins));
  return el("div", {},
    c.ece !== undefined ? el("p", {}, `Expected calibration error: ${number(c.ece, 3)}`) : null,
    c.temperature !== undefined ? el("p", {}, `Temperature: ${number(c.temperature, 3)}${c.applied === false ? " (not applied)" : ""}`) : null,
    bins.length ? chart : null,
    bins.length ? table(["confidence bin", "images", "mean confidence", "accuracy"],
      bins.map((b) => [`${number(b.lower, 2)}–${number(b.upper, 2)}`, b.images, number(b.confidence, 3), number(b.accuracy, 3)])) : null,
    Object.entries(c).filter(([k, v]) => !["bins", "ece", "temperature", "applied"].includes(k) && typeof v !== "object").length
      ? pairs(Object.entries(c).filter(([k, v]) => !["bins", "ece", "temperature", "applied"].includes(k) && typeof v !== "object").map(([k, v]) => [readable(k), shown(v)]))
      : null);
}

function explanations(list, runId) {
  if (!list.length) return el("p", { class: "muted" }, "No explanations (Evaluate explains the errors when it has the model).");
  const name = (path) => decodeURIComponent(String(path).split("/").pop());
  return el("div", { class: "explanations" }, list.map((path) =>
    el("figure", {}, el("img", { src: imageSource(runId, path), alt: `Grad-CAM: ${name(path)}`, loading: "lazy" }), el("figcaption", {}, name(path)))));
}
