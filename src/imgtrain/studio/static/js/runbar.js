// The run bar: the running box's progress (bar, images/s, ETA) and the live charts of the selected run:
// loss per batch, and per epoch the training and validation loss and accuracy of every Train box (of a sweep
// box, its running trial's).
import { byId, el, fill } from "./dom.js";
import { COLOURS, Chart, joined } from "./charts.js";
import { clock, number, percent } from "./labels.js";
import { moduleOf, on, state } from "./state.js";

let batchChart;
let epochChart;
let pending = false;

export function initRunBar() {
  const figure = (id) => byId(id).closest("figure");
  batchChart = new Chart(byId("chart-batches"), { xLabel: "epoch", axes: [{ scale: "loss", label: "loss" }], fill: figure("chart-batches") });
  epochChart = new Chart(byId("chart-epochs"), {
    xLabel: "epoch",
    axes: [{ scale: "loss", label: "loss" }, { scale: "acc", label: "accuracy", percent: true }],
    fill: figure("chart-epochs"),
    yRange: { acc: [0, 1] },
    wholeX: true,
  });
  on("live", () => schedule());
  on("run", () => schedule());
  draw();
}

function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    draw();
  });
}

function draw() {
  drawProgress();
  drawBatches();
  drawEpochs();
}

/** The node that runs now: the one with a running state (the last progress event's, when several). */
function runningNode() {
  const nodes = state.run?.layout?.nodes || {};
  const current = state.live?.current;
  if (current?.node && nodes[current.node]?.status === "running") return current.node;
  return Object.keys(nodes).find((id) => nodes[id].status === "running") || null;
}

function drawProgress() {
  byId("runbar").dataset.status = state.run?.status || "none";
  const bar = byId("run-progress");
  const text = byId("run-progress-text");
  const speed = byId("run-speed");
  const eta = byId("run-eta");
  const run = state.run;
  const id = runningNode();
  const entry = id ? run.layout.nodes[id] : null;
  const current = state.live?.current?.node === id ? state.live.current : null;
  if (!run) {
    setBar(bar, 0);
    text.textContent = "No run selected: draw the pipeline, choose the images, Submit.";
    speed.textContent = eta.textContent = "";
    return;
  }
  if (!entry) {
    const done = Object.values(run.layout.nodes).filter((n) => n.status === "done").length;
    const total = Object.keys(run.layout.nodes).length;
    setBar(bar, total ? done / total : 0);
    text.textContent = `run #${run.id} ${run.status}: ${done} of ${total} boxes done`;
    speed.textContent = eta.textContent = "";
    return;
  }
  const title = `${moduleOf(state.nodes.get(id) || { module: entry.module }).title} (${id})`;
  const p = entry.progress;
  const fraction = p && p.total ? p.done / p.total : 0;
  setBar(bar, fraction);
  if (current && current.batches) {
    text.textContent = `${title}${current.trial != null ? `, trial ${current.trial}` : ""}: epoch ${current.epoch}/${current.epochs ?? "?"}, batch ${current.batch}/${current.batches}, loss ${number(current.loss, 4)} — ${percent(fraction, 0)}`;
    speed.textContent = current.images_per_second != null ? `${number(Math.round(current.images_per_second))} images/s` : "";
    eta.textContent = `ETA ${clock(etaSeconds(current))}`;
  } else {
    text.textContent = p && p.total ? `${title}: ${number(p.done)}/${number(p.total)} ${p.unit || ""} — ${percent(fraction, 0)}` : `${title}: running`;
    speed.textContent = "";
    eta.textContent = "";
  }
}

/** Seconds left of the running training: the event's own estimate, else the time per batch so far. */
function etaSeconds(e) {
  if (typeof e.eta_seconds === "number") return e.eta_seconds;
  if (!e.seconds || !e.batch) return null;
  const left = ((e.epochs || e.epoch) - e.epoch) * e.batches + (e.batches - e.batch);
  return (left * e.seconds) / e.batch;
}

function setBar(bar, fraction) {
  const value = Math.max(0, Math.min(1, fraction || 0));
  bar.setAttribute("aria-valuenow", String(Math.round(100 * value)));
  bar.setAttribute("aria-valuetext", percent(value, 0));
  bar.firstElementChild.style.width = `${(100 * value).toFixed(1)}%`;
}

const trainNodes = (map) => [...(map?.keys() || [])].sort();

function drawBatches() {
  const nodes = trainNodes(state.live?.batches);
  const tables = nodes.map((node) => {
    const rows = [...state.live.batches.get(node).values()].map((r) => [r.epoch - 1 + r.batch / r.batches, r.loss]).sort((a, b) => a[0] - b[0]);
    return [rows.map((r) => r[0]), rows.map((r) => r[1])];
  });
  const series = nodes.map((node, i) => ({ label: `${node}: loss`, scale: "loss", stroke: COLOURS[i % COLOURS.length], points: false }));
  batchChart.set(series.length ? series : [{ label: "loss", scale: "loss", stroke: COLOURS[0] }], joined(tables.length ? tables : [[[], []]], Math.max(1, series.length)));
  byId("chart-batches-empty").hidden = nodes.length > 0;
}

function drawEpochs() {
  const nodes = trainNodes(state.live?.epochs);
  const series = [];
  const tables = nodes.map((node, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const trial = state.live.epochs.get(node).trial; // a sweep box's running trial
    const name = trial != null ? `${node} trial ${trial}` : node;
    series.push(
      { label: `${name}: loss`, scale: "loss", stroke: colour, dash: [5, 4] },
      { label: `${name}: val loss`, scale: "loss", stroke: colour },
      { label: `${name}: acc`, scale: "acc", stroke: colour, dash: [2, 3], percent: true },
      { label: `${name}: val acc`, scale: "acc", stroke: colour, width: 2.5, percent: true },
    );
    const rows = [...state.live.epochs.get(node).values()].sort((a, b) => a.epoch - b.epoch);
    return [rows.map((r) => r.epoch), rows.map((r) => r.train_loss ?? null), rows.map((r) => r.val_loss ?? null),
      rows.map((r) => r.train_top1 ?? null), rows.map((r) => r.val_top1 ?? null)];
  });
  if (!series.length) series.push({ label: "val acc", scale: "acc", stroke: COLOURS[0], percent: true });
  epochChart.set(series, joined(tables.length ? tables : [[[], []]], series.length));
  byId("chart-epochs-empty").hidden = nodes.length > 0;
  drawLog();
}

function drawLog() {
  const log = state.live?.log || [];
  const last = [...log].reverse().find((e) => e.level === "WARNING" || e.level === "ERROR") || log[log.length - 1];
  const line = byId("run-log");
  if (!last) return fill(line);
  fill(line, el("span", { class: `level ${String(last.level).toLowerCase()}` }, last.level), " ", last.message);
}
