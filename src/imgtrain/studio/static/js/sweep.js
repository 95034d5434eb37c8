// A Tune Model Hyperparameters box's output: every trial with its parameters, state and result (the best one
// highlighted, pruned and failed ones marked), and each trial's validation loss per epoch overlaid in one chart.
import { el } from "./dom.js";
import { COLOURS, Chart, joined } from "./charts.js";
import { number, percent, readable } from "./labels.js";

const STATES = { complete: "complete", pruned: "pruned", fail: "failed", interrupted: "interrupted", running: "running" };

/** The sweep's summary line, the curves and the trials' table. */
export function sweepView(a) {
  const trials = a.trials || [];
  if (!trials.length) return el("p", { class: "muted" }, "No trial has ended yet: the table fills as each one does.");
  const chart = el("div", { class: "chart sweep-curves", role: "img", "aria-label": "Validation loss per epoch of every trial" });
  queueMicrotask(() => curvesChart(chart, a));
  const failed = trials.filter((t) => t.failure);
  return el("div", { class: "sweep-output" },
    el("p", { class: "summary" }, summary(a)),
    el("h4", {}, "Validation loss per epoch, every trial (log scale)"),
    chart,
    el("h4", {}, "Trials"),
    el("div", { class: "scroll-table" }, trialsTable(trials, a.parameters || [])),
    failed.length
      ? el("ul", { class: "sweep-failures" }, failed.map((t) => el("li", {}, el("strong", {}, `Trial ${t.trial} ${STATES[t.state] ?? t.state}: `), t.failure)))
      : null);
}

function summary(a) {
  const counts = a.counts || {};
  const trials = a.trials || [];
  const parts = [["complete", "complete"], ["pruned", "pruned"], ["fail", "failed"], ["running", "running"]]
    .filter(([key]) => counts[key]).map(([key, word]) => `${counts[key]} ${word}`);
  const head = a.ended ? `${trials.length} trials` : `${trials.length} of ${a.trials_asked ?? "?"} trials so far`;
  const best = trials.find((t) => t.best);
  return [
    `${head}${parts.length ? ` (${parts.join(", ")})` : ""}`,
    best ? ` · best: trial ${best.trial}, validation loss ${number(best.val_loss, 4)}, top-1 ${percent(best.val_top1)}` : " · no trial complete yet",
    a.status === "done" ? "; Score and Evaluate use its model" : "",
  ].join("");
}

/** One row per trial: its number (★ the best), state, result, parameters, then its epochs and time. */
function trialsTable(trials, parameters) {
  const headers = ["trial", "state", "val loss", "top-1", ...parameters.map(readable), "epochs (best)", "seconds"];
  return el("table", { class: "sticky sweep-trials" },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, trials.map((t) => el("tr", { class: `state-${t.state}${t.best ? " best" : ""}`, dataset: { trial: t.trial } },
      el("th", { scope: "row", class: "num", title: t.best ? "the best trial: its model is the box's output" : null }, t.best ? `★ ${t.trial}` : String(t.trial)),
      el("td", {}, el("span", { class: `trial-state ${t.state}`, title: t.failure || null }, STATES[t.state] ?? t.state)),
      el("td", { class: "num" }, number(t.val_loss, 4)),
      el("td", { class: "num" }, percent(t.val_top1)),
      parameters.map((name) => el("td", { class: typeof t.params?.[name] === "number" ? "num" : null }, value(t.params?.[name]))),
      el("td", { class: "num" }, t.epochs_run == null ? "" : `${t.epochs_run}${t.best_epoch ? ` (${t.best_epoch})` : ""}`),
      el("td", { class: "num" }, number(t.seconds, 3))))));
}

/** The loss axis: from the lowest loss to a little above the completed trials' curves (`focus`), so a trial that
 * diverged and was pruned goes off the top instead of flattening the rest. */
function lossRange(min, max, focus) {
  if (min == null || max == null || !(min > 0)) return [0.1, 10];
  const top = Math.min(max, focus != null && focus > min ? focus : max);
  return top > min ? [min / 1.05, top * 1.1] : [min / 1.5, min * 1.5];
}

const value = (v) => (v === undefined || v === null ? "–" : typeof v === "number" ? number(v, 3) : String(v));

/** One line per trial (the best one wide, pruned ones dashed, failed ones red) on a log scale of the loss. */
function curvesChart(container, a) {
  const trials = (a.trials || []).filter((t) => (a.curves?.[t.trial] || []).length);
  const series = trials.map((t, i) => ({
    label: `trial ${t.trial}${t.best ? " (best)" : t.state === "pruned" ? " (pruned)" : t.state === "fail" ? " (failed)" : ""}`,
    scale: "loss",
    stroke: t.state === "fail" ? "#c92a2a" : t.best ? "#111" : COLOURS[i % COLOURS.length],
    width: t.best ? 3 : 1.5,
    dash: t.state === "pruned" ? [5, 4] : undefined,
  }));
  const tables = trials.map((t) => {
    const points = a.curves[t.trial];
    return [points.map((p) => p[0]), points.map((p) => (p[1] > 0 ? p[1] : null))];
  });
  const complete = trials.filter((t) => t.state === "complete").flatMap((t) => a.curves[t.trial].map((p) => p[1]));
  const focus = complete.length ? Math.max(...complete) : null; // the axis ends above the completed trials' curves
  const chart = new Chart(container, {
    xLabel: "epoch",
    axes: [{ scale: "loss", label: "validation loss", log: true }],
    yRange: { loss: (_u, min, max) => lossRange(min, max, focus) },
    height: 200,
    wholeX: true,
  });
  chart.set(series.length ? series : [{ label: "validation loss", scale: "loss", stroke: COLOURS[0] }], joined(tables.length ? tables : [[[], []]], Math.max(1, series.length)));
  return chart;
}
