// The parameter panel: the selected box's parameters, built from its module's declarations, with each one's help
// and, after a check, the library's message at the field it is about.
import { byId, el, fill } from "./dom.js";
import { removeEdge } from "./graph.js";
import { number, readable } from "./labels.js";
import { emit, moduleOf, on, selectedNode, state } from "./state.js";

let browse = () => {}; // set by files.js: open the file browser for {node, field}
let shownFor = null; // the node id whose form is shown

export function initForms({ openBrowser }) {
  browse = openBrowser;
  on("selection", () => renderParams());
  on("graph", () => {
    if (shownFor && !state.nodes.has(shownFor)) renderParams();
    else if (!shownFor && state.selected?.edge) renderParams();
  });
  on("problems", () => showProblems());
  on("params", (detail) => {
    if (detail?.from !== "form") syncValues();
  });
  renderParams();
}

/** Rebuild the panel for the selection: a box's parameters, an arrow's ends, or what to do. */
export function renderParams() {
  const panel = byId("params");
  const node = selectedNode();
  shownFor = node?.id ?? null;
  if (!node) {
    fill(panel, state.selected?.edge ? edgeInfo(state.selected.edge) : emptyHint());
    return;
  }
  const module = moduleOf(node);
  const declarations = Object.entries(module.parameters || {});
  fill(
    panel,
    el("h2", { class: "panel-title" }, module.title, " ", el("span", { class: "muted" }, `(${node.id})`)),
    el("div", { class: "node-problems", id: "node-problems", "aria-live": "polite" }),
    declarations.length
      ? el("form", { class: "params", id: "params-form", "aria-label": `Parameters of ${node.id}`, onsubmit: (e) => e.preventDefault() },
        declarations.map(([name, d]) => field(node, name, d)))
      : el("p", { class: "muted" }, "This module has no parameters: it works on its inputs."),
    inputsList(node),
  );
  showProblems();
}

function emptyHint() {
  return el("div", { class: "empty-hint" },
    el("h2", { class: "panel-title" }, "Parameters"),
    el("p", {}, "Select a box on the canvas to see and change its parameters."),
    el("p", { class: "muted" }, "Add boxes from the palette; connect an output port (right) to an input port (left)."));
}

function edgeInfo(edge) {
  const target = state.nodes.get(edge.node);
  const source = target?.inputs[edge.port];
  if (!source) return emptyHint();
  return el("div", {},
    el("h2", { class: "panel-title" }, "Arrow"),
    el("p", {}, `${source.node}.${source.port} → ${edge.node}.${edge.port}`),
    el("p", { class: "muted" }, `carries: ${moduleOf(target).inputs?.[edge.port] ?? ""}`),
    el("button", { type: "button", onclick: () => removeEdge(edge) }, "Remove arrow"));
}

function inputsList(node) {
  const inputs = Object.entries(moduleOf(node).inputs || {});
  if (!inputs.length) return null;
  const optional = moduleOf(node).optional_inputs || [];
  return el("details", { class: "inputs-list" },
    el("summary", {}, "Inputs"),
    el("ul", {}, inputs.map(([port, kind]) => {
      const source = node.inputs[port];
      return el("li", {}, el("strong", {}, port), ` (${kind}${optional.includes(port) ? ", optional" : ""}): `,
        source ? `${source.node}.${source.port}` : el("span", { class: "muted" }, "not connected"));
    })));
}

const fieldId = (node, name) => `field-${node.id}-${name}`;

/** One parameter: its readable label, its control (by type), its help and expected values, its error line. */
function field(node, name, d) {
  const id = fieldId(node, name);
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  const value = node.params[name] ?? d.default;
  const control = makeControl(node, name, d, value, id);
  control.setAttribute("aria-describedby", `${helpId} ${errorId}`);
  const label = readable(name);
  const help = el("p", { class: "help", id: helpId }, d.help || "", expectedText(d));
  const error = el("p", { class: "field-error", id: errorId, hidden: true });
  if (d.type === "bool")
    return el("div", { class: "field field-bool", dataset: { field: name } },
      el("label", { for: id }, control, " ", label), help, error);
  const row = d.type === "path"
    ? el("div", { class: "path-row" }, control,
      el("button", { type: "button", class: "browse", onclick: () => browse({ node: node.id, field: name }) }, "Browse…"))
    : control;
  return el("div", { class: "field", dataset: { field: name } }, el("label", { for: id }, label), row, help, error);
}

function expectedText(d) {
  const parts = [];
  if (d.expected && d.type !== "bool" && !(d.choices || []).length) parts.push(d.expected);
  if (d.default !== undefined && d.default !== null && d.default !== "" && d.type !== "bool")
    parts.push(`default ${typeof d.default === "number" ? number(d.default) : d.default}`);
  return parts.length ? el("span", { class: "expected" }, ` (${parts.join("; ")})`) : null;
}

function makeControl(node, name, d, value, id) {
  const common = { id, name, dataset: { node: node.id, field: name } };
  let control;
  if (d.type === "bool") {
    control = el("input", { ...common, type: "checkbox" });
    control.checked = Boolean(value);
  } else if ((d.choices || []).length) {
    control = el("select", common, d.choices.map((c) => el("option", { value: c }, String(c))));
    if (!d.choices.includes(value) && value !== null && value !== undefined)
      control.prepend(el("option", { value: String(value) }, String(value)));
    control.value = value ?? "";
  } else if (d.type === "int" || d.type === "float") {
    control = el("input", { ...common, type: "number", inputmode: d.type === "int" ? "numeric" : "decimal" });
    if (d.low !== null && d.low !== undefined && !(d.above && d.type === "float")) control.min = String(d.above ? d.low + 1 : d.low);
    if (d.high !== null && d.high !== undefined) control.max = String(d.high);
    control.step = d.type === "int" ? "1" : "any";
    control.value = value ?? "";
  } else {
    control = el("input", { ...common, type: "text", spellcheck: "false", autocomplete: "off" });
    if (d.type === "path") control.placeholder = "choose with Browse…";
    control.value = value ?? "";
  }
  const update = () => {
    node.params[name] = readControl(control, d);
    emit("params", { node: node.id, field: name, from: "form" });
  };
  control.addEventListener(d.type === "bool" || control.tagName === "SELECT" ? "change" : "input", update);
  return control;
}

/** The value a control holds, as the API takes it: numbers as numbers (even wrong ones: the check says why). */
function readControl(control, d) {
  if (d.type === "bool") return control.checked;
  const text = control.value;
  if (text === "" && d.optional) return null;
  if (d.type === "int" || d.type === "float") {
    if (text.trim() === "") return control.validity?.badInput ? "not a number" : "";
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }
  return text;
}

/** Put values changed elsewhere (the file browser, a loaded run) into the form, unless being edited. */
function syncValues() {
  const node = selectedNode();
  if (!node || node.id !== shownFor) return renderParams();
  for (const control of byId("params").querySelectorAll("[data-field]")) {
    if (!(control instanceof HTMLInputElement || control instanceof HTMLSelectElement)) continue;
    if (control === document.activeElement) continue;
    const value = node.params[control.dataset.field];
    if (control.type === "checkbox") control.checked = Boolean(value);
    else control.value = value ?? "";
  }
}

/** The last check's problems of the shown box: at their field (red, aria-invalid), or above the form. */
function showProblems() {
  const node = selectedNode();
  const panel = byId("params");
  for (const error of panel.querySelectorAll(".field-error")) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const control of panel.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  for (const f of panel.querySelectorAll(".field.invalid")) f.classList.remove("invalid");
  const top = byId("node-problems");
  if (!node || !top) return;
  const loose = [];
  for (const problem of state.problems.filter((p) => p.node === node.id)) {
    const wrapper = problem.field ? panel.querySelector(`.field[data-field="${CSS.escape(problem.field)}"]`) : null;
    if (!wrapper) {
      loose.push(problem);
      continue;
    }
    wrapper.classList.add("invalid");
    const error = wrapper.querySelector(".field-error");
    error.hidden = false;
    error.textContent = error.textContent ? `${error.textContent}\n${problem.message}` : problem.message;
    wrapper.querySelector("input, select")?.setAttribute("aria-invalid", "true");
  }
  fill(top, loose.map((p) => el("p", { class: "problem" }, p.field ? `${readable(p.field)}: ${p.message}` : p.message)));
}
