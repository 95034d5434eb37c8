// The Runs view: past runs as a table (one row per Train box of each run), and Compare: the ticked rows' curves
// overlaid (validation accuracy and loss per epoch) with their parameters and metrics side by side.
import { api } from "./api.js";
import { byId, el, fill } from "./dom.js";
import { COLOURS, Chart, joined } from "./charts.js";
import { parseRef } from "./graph.js";
import { duration, number, percent, readable, shortTime, shown } from "./labels.js";
import { on, state } from "./state.js";

const ticked = new Set(); // "runId:trainNode"
let open = () => {};
let accChart;
let lossChart;

export function initRunList({ openRun }) {
  open = openRun;
  on("runs", () => renderTable());
  byId("compare").addEventListener("click", () => compare());
  byId("refresh-runs").addEventListener("click", async () => {
    const runs = await api("/api/runs");
    state.runs = runs;
    renderTable();
  });
}

/** The train boxes of a run: from its summary, else its request's train nodes; [null] for a run without one. */
function trainsOf(run) {
  const names = Object.keys(run.summary || {});
  if (names.length) return names;
  const fromRequest = (run.request?.nodes || []).filter((n) => n.module === "train").map((n) => n.id);
  return fromRequest.length ? fromRequest : [null];
}

function requestNode(run, id) {
  return (run.request?.nodes || []).find((n) => n.id === id) || null;
}

/** The model box's name feeding a train box of a run's request. */
function modelName(run, train) {
  const node = requestNode(run, train);
  const ref = node?.inputs?.model;
  const model = ref ? requestNode(run, parseRef(ref).node) : null;
  return run.summary?.[train]?.model ?? model?.params?.model_name ?? "";
}

function renderTable() {
  const body = byId("runs-body");
  const runs = [...state.runs].sort((a, b) => b.id - a.id);
  const rows = [];
  for (const run of runs)
    for (const train of trainsOf(run)) {
      const key = `${run.id}:${train ?? ""}`;
      const summary = (train && run.summary?.[train]) || {};
      const params = (train && requestNode(run, train)?.params) || {};
      const box = el("input", {
        type: "checkbox",
        "aria-label": `compare run ${run.id}${train ? ` ${train}` : ""}`,
        disabled: !train,
        dataset: { key },
      });
      box.checked = ticked.has(key);
      box.addEventListener("change", () => {
        if (box.checked) ticked.add(key);
        else ticked.delete(key);
        updateCompareButton();
      });
      const best = summary.best_accuracy ?? (trainsOf(run).length === 1 ? run.best_accuracy : null);
      rows.push(el("tr", { dataset: { run: run.id, train: train ?? "" }, class: state.run?.id === run.id ? "current" : null },
        el("td", {}, box),
        el("td", {}, el("button", { type: "button", class: "link", onclick: () => open(run.id), title: "Open this run on the canvas" }, `#${run.id}`)),
        el("td", {}, train ?? "–"),
        el("td", {}, el("span", { class: "status-chip", dataset: { status: run.status } }, run.status)),
        el("td", {}, shortTime(run.created)),
        el("td", { class: "num" }, duration(run.started, run.ended)),
        el("td", {}, train ? modelName(run, train) : ""),
        el("td", { class: "num" }, number(summary.epochs ?? params.epochs)),
        el("td", { class: "num" }, number(summary.lr ?? params.learning_rate)),
        el("td", { class: "num" }, number(summary.batch_size ?? params.batch_size)),
        el("td", { class: "num" }, best == null ? "–" : percent(best))));
    }
  fill(body, rows.length ? rows : el("tr", {}, el("td", { colspan: 11, class: "muted" }, "No runs yet: Submit one from the canvas.")));
  updateCompareButton();
}

function updateCompareButton() {
  const button = byId("compare");
  button.disabled = ticked.size < 2;
  button.title = ticked.size < 2 ? "Tick two or more rows to compare them" : `Compare the ${ticked.size} ticked rows`;
}

/** Overlay the ticked rows' curves and put their parameters and metrics side by side. */
async function compare() {
  const out = byId("comparison");
  out.hidden = false;
  const items = [...ticked].map((key) => {
    const [id, train] = key.split(":");
    return { id: Number(id), train };
  });
  let details;
  try {
    const runs = await Promise.all([...new Set(items.map((i) => i.id))].map((id) => api(`/api/runs/${id}`)));
    const byRun = new Map(runs.map((r) => [r.id, r]));
    details = await Promise.all(items.map(async (item) => ({ ...item, run: byRun.get(item.id), metrics: await evaluationOf(byRun.get(item.id), item.train) })));
  } catch (error) {
    fill(byId("comparison-table"), el("p", { class: "error" }, error.message));
    return;
  }
  drawCurves(details);
  fill(byId("comparison-table"), sideBySide(details));
}

/** The metrics of the Evaluate box that scores this train box's model (through its Score box), or null. */
async function evaluationOf(run, train) {
  const nodes = run.request?.nodes || [];
  const from = (node, port) => (node?.inputs?.[port] ? parseRef(node.inputs[port]).node : null);
  const score = nodes.find((n) => n.module === "score" && from(n, "model") === train);
  const evaluate = score && nodes.find((n) => n.module === "evaluate" && from(n, "scores") === score.id);
  if (!evaluate) return null;
  try {
    const answer = await api(`/api/runs/${run.id}/nodes/${encodeURIComponent(evaluate.id)}`);
    return answer?.metrics || null;
  } catch {
    return null; // not produced yet (409) or gone: the table says "–"
  }
}

const label = (d) => `#${d.id} ${d.train}`;

function drawCurves(details) {
  accChart ??= new Chart(byId("compare-acc"), { xLabel: "epoch", axes: [{ scale: "acc", label: "validation accuracy", percent: true }], height: 200, yRange: { acc: [0, 1] }, wholeX: true });
  lossChart ??= new Chart(byId("compare-loss"), { xLabel: "epoch", axes: [{ scale: "loss", label: "validation loss" }], height: 200, wholeX: true });
  const rowsOf = (d) => [...(d.run.history?.[d.train] || [])].sort((a, b) => a.epoch - b.epoch);
  const table = (d, key) => {
    const rows = rowsOf(d);
    return [rows.map((r) => r.epoch), rows.map((r) => r[key] ?? null)];
  };
  const series = (scale, extra = {}) => details.map((d, i) => ({ label: label(d), scale, stroke: COLOURS[i % COLOURS.length], width: 2, ...extra }));
  accChart.set(series("acc", { percent: true }), joined(details.map((d) => table(d, "val_top1")), details.length));
  lossChart.set(series("loss"), joined(details.map((d) => table(d, "val_loss")), details.length));
}

function sideBySide(details) {
  const trainParams = details.map((d) => requestNode(d.run, d.train)?.params || {});
  const names = [...new Set(trainParams.flatMap((p) => Object.keys(p)))];
  const always = ["epochs", "learning_rate", "batch_size"];
  const differing = names.filter((n) => always.includes(n) || new Set(trainParams.map((p) => JSON.stringify(p[n]))).size > 1);
  const modelNode = (d) => {
    const ref = requestNode(d.run, d.train)?.inputs?.model;
    return ref ? requestNode(d.run, parseRef(ref).node) : null;
  };
  const best = (d) => {
    const values = (d.run.history?.[d.train] || []).map((r) => r.val_top1).filter((v) => v != null);
    return values.length ? Math.max(...values) : d.run.summary?.[d.train]?.best_accuracy ?? null;
  };
  const last = (d, key) => (d.run.history?.[d.train] || []).slice(-1)[0]?.[key];
  const rows = [
    ["Status", (d) => d.run.status],
    ["Model", (d) => modelName(d.run, d.train)],
    ["Model box", (d) => modelNode(d)?.module ?? "–"],
    ["Pretrained", (d) => shown(modelNode(d)?.params?.pretrained)],
    ...differing.map((n, _i) => [readable(n), (d) => shown(requestNode(d.run, d.train)?.params?.[n])]),
    ["Epochs run", (d) => String((d.run.history?.[d.train] || []).length)],
    ["Best validation accuracy", (d) => (best(d) == null ? "–" : percent(best(d)))],
    ["Last validation loss", (d) => number(last(d, "val_loss")) || "–"],
    ["Accuracy (Evaluate)", (d) => (d.metrics?.accuracy == null ? "–" : percent(d.metrics.accuracy))],
    ["Macro F1", (d) => number(d.metrics?.macro_avg?.f1, 3) || "–"],
    ["Log loss", (d) => number(d.metrics?.log_loss, 3) || "–"],
    ["Duration", (d) => duration(d.run.started, d.run.ended) || "–"],
  ];
  return el("table", { class: "side-by-side", id: "comparison-params" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, ""), details.map((d, i) =>
      el("th", { scope: "col" }, el("span", { class: "swatch", style: { background: COLOURS[i % COLOURS.length] } }), label(d))))),
    el("tbody", {}, rows.map(([name, value]) => {
      const cells = details.map((d) => value(d));
      const differs = new Set(cells).size > 1;
      return el("tr", { class: differs ? "differs" : null }, el("th", { scope: "row" }, name), cells.map((c) => el("td", {}, c)));
    })));
}
