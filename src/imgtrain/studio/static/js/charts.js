// Charts with uPlot (static/vendor, loaded by index.html as the global uPlot): real axes with ticks and labels,
// values on hover (uPlot's cursor and legend); sized to their container.
import { number, percent } from "./labels.js";

export const COLOURS = ["#1f6fb4", "#d9730d", "#2f9e44", "#9c36b5", "#c92a2a", "#5c7080"];

/**
 * A chart that keeps its uPlot while its series stay the same and makes a new one when they change.
 * `series`: [{label, stroke, scale?, dash?, width?}]; data: [xs, ys1, ys2, ...] (uPlot's aligned data);
 * an axis with `log` has a log-10 scale (its values above 0).
 */
/** Tick steps of a counted axis (epochs): never a fraction. */
const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export class Chart {
  /** `fill`: an element whose height the chart and its legend fill (the run bar's figures), else `height`;
   * `wholeX`: x is counted (epochs), so its ticks are whole numbers. */
  constructor(container, { xLabel, axes = [{ scale: "y", label: "" }], height = 150, yRange = {}, fill = null, wholeX = false }) {
    this.container = container;
    this.wholeX = wholeX;
    this.xLabel = xLabel;
    this.axes = axes;
    this.height = height;
    this.yRange = yRange;
    this.fill = fill;
    this.plot = null;
    this.key = "";
    const observer = new ResizeObserver(() => this.resize());
    observer.observe(container);
    if (fill) observer.observe(fill);
  }

  set(series, data) {
    const key = JSON.stringify(series.map((s) => [s.label, s.scale, s.stroke]));
    if (!this.plot || key !== this.key) {
      this.plot?.destroy();
      this.key = key;
      this.plot = new uPlot(this.options(series), data, this.container);
      this.resize();
    } else {
      this.plot.setData(data);
    }
  }

  options(series) {
    const scales = { x: { time: false, range: xRange } };
    for (const axis of this.axes)
      scales[axis.scale] = axis.log ? { distr: 3, log: 10, range: this.yRange[axis.scale] } : { range: this.yRange[axis.scale] || yRange };
    return {
      width: this.width(),
      height: this.plotHeight(),
      scales,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      axes: [
        {
          label: this.xLabel,
          labelSize: 18,
          size: 36,
          stroke: "#444",
          grid: { stroke: "#eee" },
          ...(this.wholeX ? { incrs: WHOLE_STEPS } : {}),
          values: (_u, ticks) => ticks.map((t) => number(t, 3)),
        },
        ...this.axes.map((axis, i) => ({
          scale: axis.scale,
          label: axis.label,
          labelSize: 18,
          size: 52,
          side: i === 0 ? 3 : 1,
          stroke: "#444",
          grid: { show: i === 0, stroke: "#eee" },
          values: (_u, ticks) => ticks.map((t) => (axis.percent ? percent(t, 0) : number(t, 3))),
        })),
      ],
      series: [
        { label: this.xLabel, value: (_u, v) => (v == null ? "–" : number(v, 4)) },
        ...series.map((s) => ({
          label: s.label,
          scale: s.scale || this.axes[0].scale,
          stroke: s.stroke,
          width: s.width || 1.5,
          dash: s.dash,
          spanGaps: true,
          points: { show: s.points ?? true, size: 5 },
          value: (_u, v) => (v == null ? "–" : s.percent ? percent(v) : number(v, 4)),
        })),
      ],
    };
  }

  width() {
    return Math.max(220, Math.floor(this.container.clientWidth || 320));
  }

  /** The plot's height: what `fill` leaves after its other children and the legend, or the fixed height. */
  plotHeight() {
    if (!this.fill) return this.height;
    const others = [...this.fill.children]
      .filter((c) => c !== this.container && getComputedStyle(c).position !== "absolute")
      .reduce((sum, c) => sum + c.offsetHeight, 0);
    const legend = this.plot?.root.querySelector(".u-legend")?.offsetHeight ?? 40;
    return Math.max(90, Math.floor(this.fill.clientHeight - others - legend - 4));
  }

  resize() {
    if (!this.plot) return;
    const [width, height] = [this.width(), this.plotHeight()];
    if (Math.abs(this.plot.width - width) > 2 || Math.abs(this.plot.height - height) > 2) this.plot.setSize({ width, height });
  }
}

/** The x range: the data's, or 0-1 before there is any (so the axes show from the start). */
function xRange(_u, min, max) {
  if (min == null || max == null) return [0, 1];
  return min === max ? [min - 0.5, max + 0.5] : [min, max];
}

function yRange(_u, min, max) {
  if (min == null || max == null) return [0, 1];
  return uPlot.rangeNum(min, max, 0.1, true);
}

/** Series of several (x, y...) tables on one x axis: uPlot.join, with the empty case handled. */
export function joined(tables, seriesCount) {
  const usable = tables.filter((t) => t[0].length);
  if (!usable.length) return [[], ...Array.from({ length: seriesCount }, () => [])];
  if (usable.length === tables.length) return uPlot.join(tables);
  // a table without points still has its series: join the others, then put empty columns where it goes
  const data = uPlot.join(usable);
  const out = [data[0]];
  let at = 1;
  for (const t of tables) {
    const n = t.length - 1;
    if (t[0].length) for (let i = 0; i < n; i++) out.push(data[at++]);
    else for (let i = 0; i < n; i++) out.push(data[0].map(() => null));
  }
  return out;
}

/** The reliability diagram: per confidence bin, accuracy against mean confidence (the diagonal is calibrated). */
export function reliabilityChart(container, bins) {
  const chart = new Chart(container, {
    xLabel: "mean confidence",
    axes: [{ scale: "y", label: "accuracy" }],
    height: 180,
    yRange: { y: [0, 1] },
  });
  const rows = bins.filter((b) => b.confidence != null).sort((a, b) => a.confidence - b.confidence);
  chart.set(
    [
      { label: "accuracy", stroke: COLOURS[0], width: 2 },
      { label: "calibrated", stroke: "#999", dash: [4, 4], points: false },
    ],
    [rows.map((b) => b.confidence), rows.map((b) => b.accuracy), rows.map((b) => b.confidence)],
  );
  return chart;
}
