// imgtrain studio's page: the entry module. It reads the modules, builds the palette, draws the default graph (or
// re-attaches to the running run), and wires the parts, each in its own module under js/.
import { api } from "./js/api.js";
import { addBox, fitIfNeeded, initCanvas, say } from "./js/canvas.js";
import { initChecks, scheduleCheck } from "./js/checks.js";
import { byId, el, fill } from "./js/dom.js";
import { chooseImages, initFiles, openBrowser } from "./js/files.js";
import { initForms } from "./js/forms.js";
import { addComparison, loadGraph } from "./js/graph.js";
import { initPanels } from "./js/panels.js";
import { initRunBar } from "./js/runbar.js";
import { initRunList } from "./js/runlist.js";
import { attach, initRuns, refreshRuns, selectRun } from "./js/runs.js";
import { emit, select, state } from "./js/state.js";
import { initTryIt } from "./js/tryit.js";

async function main() {
  window.addEventListener("unhandledrejection", (event) => toast(event.reason?.message || String(event.reason)));
  initCanvas();
  initForms({ openBrowser });
  initChecks();
  initFiles();
  initRuns();
  initRunBar();
  initRunList({ openRun: (id) => openRun(id) });
  initTryIt();
  initPanels();
  initToolbar();
  initViews();
  api("/api/health").then((health) => (byId("root").textContent = health.root), (error) => toast(error.message));
  let modules;
  try {
    modules = await api("/api/modules");
  } catch (error) {
    toast(error.message);
    say(error.message, "error");
    return;
  }
  state.modules = modules.modules || {};
  state.palette = modules.palette || Object.keys(state.modules);
  state.defaultGraph = modules.default_graph || { nodes: [] };
  renderPalette();
  let attached = null;
  try {
    attached = await attach();
  } catch (error) {
    toast(error.message);
  }
  if (attached === null) loadDefault();
  if (!state.nodes.size) scheduleCheck();
  document.body.dataset.ready = "true";
}

function renderPalette() {
  const items = state.palette.filter((name) => state.modules[name]).map((name) => {
    const module = state.modules[name];
    const button = el("button", {
      type: "button",
      class: "palette-item",
      draggable: "true",
      dataset: { module: name },
      title: `Add ${module.title} to the canvas (click, or drag it there)`,
      onclick: () => addBox(name),
    }, module.title);
    button.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("application/x-imgtrain-module", name);
      event.dataTransfer.effectAllowed = "copy";
    });
    return el("li", {}, button);
  });
  fill(byId("palette-list"), items);
}

function initToolbar() {
  byId("compare-models").addEventListener("click", () => {
    const result = addComparison();
    if (!result.ok) return say(result.message, "error");
    say(`Added ${result.ids.join(", ")}: a second model trained, scored and evaluated on the same split.`);
    fitIfNeeded();
    select({ node: result.ids[0] });
  });
  byId("choose-images").addEventListener("click", () => {
    if (!chooseImages()) say("Add a Convert to Image Directory box first: its source is the images.", "error");
  });
  byId("default-graph").addEventListener("click", () => {
    loadDefault();
    say("The default pipeline: choose the images (Convert → Browse…), then Submit.");
  });
}

/** The default graph, laid out to fit the canvas (its own positions are spaced for a wider one). */
function loadDefault() {
  loadGraph(state.defaultGraph, null, byId("canvas").clientWidth);
}

/** The centre's views: the canvas and the runs. */
function initViews() {
  const views = ["canvas", "runs"];
  for (const name of views)
    byId(`view-${name}-tab`).addEventListener("click", () => {
      for (const other of views) {
        byId(`view-${other}-tab`).setAttribute("aria-selected", String(other === name));
        byId(`view-${other}`).hidden = other !== name;
      }
      byId("canvas-tools").hidden = name !== "canvas";
      if (name === "runs") refreshRuns().catch((error) => toast(error.message));
    });
}

/** Open a run from the Runs view: its graph on the canvas, its states, curves and outputs. */
async function openRun(id) {
  try {
    await selectRun(id, { loadCanvas: true });
    byId("view-canvas-tab").click();
    emit("runs", state.runs);
  } catch (error) {
    toast(error.message);
  }
}

let toastTimer;
/** A message that no other place shows (an API error nobody caught). */
function toast(message) {
  const box = byId("toast");
  box.textContent = message;
  box.hidden = !message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 8000);
}

main();
