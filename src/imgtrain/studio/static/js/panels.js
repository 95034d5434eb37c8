// The right panel: the selected box's head (its module, id and state in the selected run, its error), and the
// tabs Parameters / Output / Try it.
import { byId, el, fill } from "./dom.js";
import { runNode } from "./canvas.js";
import { showOutput } from "./outputs.js";
import { moduleOf, on, selectedNode, state } from "./state.js";

const TABS = ["params", "output", "try"];
let outputFor = null; // "runId/node" shown in the Output tab

export function initPanels() {
  for (const name of TABS) byId(`tab-${name}`).addEventListener("click", () => showTab(name));
  byId("panel-wide").addEventListener("click", () => {
    const wide = document.querySelector(".app").classList.toggle("wide-panel");
    byId("panel-wide").setAttribute("aria-pressed", String(wide));
    byId("panel-wide").textContent = wide ? "Narrower" : "Wider";
  });
  byId("panel-tabs").addEventListener("keydown", (event) => {
    if (!["ArrowLeft", "ArrowRight"].includes(event.key)) return;
    const enabled = TABS.filter((n) => !byId(`tab-${n}`).disabled);
    const at = enabled.indexOf(document.activeElement?.id?.slice(4));
    const next = enabled[(at + (event.key === "ArrowRight" ? 1 : enabled.length - 1)) % enabled.length];
    byId(`tab-${next}`).focus();
    showTab(next);
  });
  on("selection", () => {
    renderHead();
    const node = selectedNode();
    if (node && runNode(node.id)) {
      outputFor = null; // a click on a box shows its output afresh
      showTab("output");
    } else if (node) showTab("params");
  });
  on("run", (detail) => {
    renderHead();
    if (detail?.changed) outputFor = null;
    loadOutput(false);
  });
  on("graph", () => renderHead());
  renderHead();
}

export function showTab(name) {
  if (byId(`tab-${name}`).disabled) return;
  for (const tab of TABS) {
    byId(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    byId(`panel-${tab}`).hidden = tab !== name;
  }
  if (name === "output") loadOutput(false);
}

function renderHead() {
  const node = selectedNode();
  const head = byId("panel-head");
  if (!node) return fill(head);
  const entry = runNode(node.id);
  fill(head,
    el("div", { class: "panel-node" }, el("strong", {}, moduleOf(node).title), " ", el("span", { class: "muted" }, node.id)),
    entry ? el("div", { class: "panel-status", dataset: { status: entry.status } }, el("span", { class: "dot", "aria-hidden": "true" }), ` ${entry.status} in run #${state.run.id}`) : null,
    entry?.status === "failed" && entry.error ? el("p", { class: "error node-error" }, entry.error) : null);
}

/** The Output tab: the selected box's output in the selected run (again when `force`, or when its state moved on). */
function loadOutput(force) {
  const container = byId("output-body");
  const node = selectedNode();
  const entry = node ? runNode(node.id) : null;
  if (!node || !state.run || !entry) {
    outputFor = null;
    fill(container, el("p", { class: "muted" }, state.run ? "Select a box of the run to see its output." : "Outputs show here once a run is selected: Submit, or open one in the Runs view."));
    return;
  }
  const key = `${state.run.id}/${node.id}/${entry.status}/${entry.trial ?? ""}`; // a sweep's panel: again per trial
  if (!force && key === outputFor) return;
  if (byId("panel-output").hidden && !force) return;
  outputFor = key;
  showOutput(container, state.run.id, node.id);
}
