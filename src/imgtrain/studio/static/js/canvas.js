// The canvas: boxes as absolutely positioned elements with port dots, arrows in one SVG layer behind them;
// adding (palette click or drag), dragging, connecting (output port, then input port), selecting and removing.
import { byId, el, fill, svg } from "./dom.js";
import { BOX_WIDTH, addNode, connect, edges, extent, freeSpot, removeEdge, removeNode } from "./graph.js";
import { number } from "./labels.js";
import { emit, moduleOf, on, select, state } from "./state.js";

const boxes = new Map(); // id -> element
let pending = null; // the first port clicked of a connection: {node, port, side, kind}
let zoom = 1;
let stage;
let wires;
let layer;

export function initCanvas() {
  stage = byId("stage");
  wires = byId("wires");
  layer = byId("boxes");
  on("graph", (detail) => {
    render();
    if (detail?.loaded) fitIfNeeded();
  });
  on("selection", () => render());
  on("problems", () => render());
  on("run", () => render());
  on("live", () => renderStatuses());
  on("params", () => render());
  const canvas = byId("canvas");
  canvas.addEventListener("click", (event) => {
    if (event.target === canvas || event.target === stage || event.target === wires || event.target === layer) {
      cancelPending();
      select(null);
    }
  });
  canvas.addEventListener("dragover", (event) => {
    if (event.dataTransfer.types.includes("application/x-imgtrain-module")) event.preventDefault();
  });
  canvas.addEventListener("drop", onDrop);
  document.addEventListener("keydown", onKey);
  byId("zoom-in").addEventListener("click", () => setZoom(zoom * 1.15));
  byId("zoom-out").addEventListener("click", () => setZoom(zoom / 1.15));
  byId("zoom-fit").addEventListener("click", () => fit());
  window.addEventListener("resize", () => fitIfNeeded());
}

/** Add a box of `module` (from the palette), at (x, y) of the stage or where there is room; select it. */
export function addBox(module, x, y) {
  const [fx, fy] = x === undefined ? freeSpot() : [x, y];
  const node = addNode(module, fx, fy);
  emit("graph");
  select({ node: node.id });
  boxes.get(node.id)?.focus({ preventScroll: false });
  boxes.get(node.id)?.scrollIntoView({ block: "nearest", inline: "nearest" });
  say(`Added ${moduleOf(node).title} as "${node.id}". Connect it: click an output port, then an input port.`);
  return node;
}

function onDrop(event) {
  const module = event.dataTransfer.getData("application/x-imgtrain-module");
  if (!module) return;
  event.preventDefault();
  const [x, y] = stagePoint(event);
  addBox(module, x - BOX_WIDTH / 2, y - 20);
}

/** A pointer event's position on the stage (unzoomed). */
function stagePoint(event) {
  const rect = stage.getBoundingClientRect();
  return [(event.clientX - rect.left) / zoom, (event.clientY - rect.top) / zoom];
}

/** A message under the toolbar: what happened, or why a connection was refused. */
let sayTimer;
export function say(message, kind = "info") {
  const line = byId("canvas-message");
  line.textContent = message;
  line.dataset.kind = kind;
  clearTimeout(sayTimer);
  sayTimer = setTimeout(() => (line.textContent = ""), kind === "error" ? 15000 : 7000);
}

export function render() {
  for (const [id, box] of boxes) if (!state.nodes.has(id)) (box.remove(), boxes.delete(id));
  for (const node of state.nodes.values()) {
    let box = boxes.get(node.id);
    if (!box || box.dataset.module !== node.module) {
      box?.remove();
      box = makeBox(node);
      boxes.set(node.id, box);
      layer.append(box);
    }
    updateBox(box, node);
  }
  resize();
  drawWires();
}

function makeBox(node) {
  const module = moduleOf(node);
  const remove = el("button", {
    type: "button",
    class: "box-remove",
    title: "Remove this box (Delete)",
    "aria-label": `Remove ${node.id}`,
    onclick: (event) => {
      event.stopPropagation();
      removeNode(node.id);
      say(`Removed "${node.id}".`);
      byId("canvas").focus();
    },
  }, "×");
  const port = (name, kind, side) =>
    el("button", {
      type: "button",
      class: `port ${side}`,
      dataset: { port: `${node.id}.${name}`, side, kind },
      title: `${side === "in" ? "input" : "output"} ${name}: ${kind}${optional(node, name, side) ? " (optional)" : ""}`,
      "aria-label": `${node.id} ${side === "in" ? "input" : "output"} ${name} (${kind})`,
      onclick: (event) => {
        event.stopPropagation();
        portClicked({ node: node.id, port: name, side, kind });
      },
    }, name);
  const box = el("div", {
    class: "box",
    tabindex: "0",
    role: "group",
    dataset: { node: node.id, module: node.module, status: "idle" },
    "aria-label": `${module.title} (${node.id})`,
  },
  el("div", { class: "box-head" }, el("span", { class: "box-title" }, module.title), remove),
  el("div", { class: "box-line" }, el("span", { class: "box-id" }, node.id),
    el("span", { class: "box-status" }, el("span", { class: "dot", "aria-hidden": "true" }), el("span", { class: "status-text" }))),
  el("div", { class: "box-progress", "aria-hidden": "true" }, el("div", { class: "fill" })),
  el("div", { class: "box-note" }),
  el("div", { class: "ports" },
    el("div", { class: "port-col in" }, Object.entries(module.inputs || {}).map(([n, k]) => port(n, k, "in"))),
    el("div", { class: "port-col out" }, Object.entries(module.outputs || {}).map(([n, k]) => port(n, k, "out")))));
  box.addEventListener("pointerdown", (event) => startDrag(event, node.id, box));
  box.addEventListener("click", () => {
    if (box.dataset.dragged === "1") return;
    select({ node: node.id });
  });
  box.addEventListener("keydown", (event) => boxKey(event, node.id, box));
  return box;
}

function optional(node, name, side) {
  return side === "in" && (moduleOf(node).optional_inputs || []).includes(name);
}

function updateBox(box, node) {
  box.style.left = `${node.x}px`;
  box.style.top = `${node.y}px`;
  const selected = state.selected?.node === node.id;
  box.classList.toggle("selected", selected);
  box.setAttribute("aria-current", selected ? "true" : "false");
  const problems = state.problems.filter((p) => p.node === node.id);
  box.classList.toggle("has-problems", problems.length > 0);
  box.dataset.problems = String(problems.length);
  for (const portEl of box.querySelectorAll(".port")) {
    const name = portEl.dataset.port.slice(node.id.length + 1);
    const side = portEl.dataset.side;
    portEl.classList.toggle("connected", side === "in" ? Boolean(node.inputs[name]) : isFed(node.id, name));
    portEl.classList.toggle("pending", pending?.node === node.id && pending.port === name && pending.side === side);
    portEl.classList.toggle("compatible", Boolean(pending) && pending.side !== side && pending.kind === portEl.dataset.kind && pending.node !== node.id);
    portEl.classList.toggle("missing", side === "in" && !node.inputs[name] && !optional(node, name, side));
  }
  renderStatus(box, node);
  renderNote(box, node, problems);
}

function isFed(id, port) {
  return edges().some((e) => e.from.node === id && e.from.port === port);
}

/** The selected run's state of this box: its layout entry when the run has a box of this id and module. */
export function runNode(id) {
  const entry = state.run?.layout?.nodes?.[id];
  const node = state.nodes.get(id);
  return entry && (!node || !entry.module || entry.module === node.module) ? entry : null;
}

function renderStatuses() {
  for (const node of state.nodes.values()) {
    const box = boxes.get(node.id);
    if (box) renderStatus(box, node);
  }
}

function renderStatus(box, node) {
  const entry = runNode(node.id);
  const status = entry?.status || "idle";
  box.dataset.status = status;
  box.querySelector(".status-text").textContent = entry ? status : "";
  const progress = entry?.progress;
  const fill = box.querySelector(".box-progress .fill");
  const fraction = status === "done" ? 1 : progress && progress.total ? Math.min(1, progress.done / progress.total) : 0;
  box.querySelector(".box-progress").hidden = !(status === "running" || (status === "done" && progress));
  fill.style.width = `${(100 * fraction).toFixed(1)}%`;
  box.title = entry
    ? `${status}${progress && progress.total ? ` — ${number(progress.done)}/${number(progress.total)} ${progress.unit || ""}` : ""}`
    : "";
}

function renderNote(box, node, problems) {
  const note = box.querySelector(".box-note");
  const entry = runNode(node.id);
  const lines = [];
  if (entry?.status === "failed" && entry.error) lines.push(el("div", { class: "box-error" }, entry.error));
  for (const p of problems) lines.push(el("div", { class: "box-problem" }, p.field ? `${p.field}: ${p.message}` : p.message));
  if (node.module === "convert") {
    const facts = state.facts?.[node.id];
    const source = node.params.source;
    if (source) lines.push(el("div", { class: "box-source", title: source }, `source: ${source}`));
    else if (!problems.some((p) => p.field === "source")) lines.push(el("div", { class: "box-source" }, "no images chosen yet"));
    if (facts && typeof facts.images === "number") {
      const classes = facts.classes ? Object.keys(facts.classes).length : 0;
      lines.push(el("div", { class: "box-facts" }, `${number(facts.images)} images${classes ? `, ${classes} classes` : ""}`));
    }
  }
  fill(note, lines);
}

// --- connecting -------------------------------------------------------------------------------------------------

function portClicked(end) {
  if (pending && pending.node === end.node && pending.port === end.port && pending.side === end.side) {
    cancelPending();
    say("Connection cancelled.");
    return;
  }
  if (!pending || pending.side === end.side) {
    pending = end;
    const wanted = end.side === "out" ? "an input" : "an output";
    say(`${end.node}.${end.port} (${end.kind}): now click ${wanted} port of kind "${end.kind}" (Escape cancels).`);
    render();
    return;
  }
  const [from, to] = pending.side === "out" ? [pending, end] : [end, pending];
  pending = null;
  const result = connect(from, to);
  if (result.ok) say(`Connected ${from.node}.${from.port} → ${to.node}.${to.port}.`);
  else {
    say(result.message, "error");
    render();
  }
}

export function cancelPending() {
  if (!pending) return;
  pending = null;
  render();
}

// --- arrows -----------------------------------------------------------------------------------------------------

/** The centre of a port's dot on the stage. */
function portPoint(id, port, side) {
  const box = boxes.get(id);
  const node = state.nodes.get(id);
  const portEl = box?.querySelector(`.port.${side}[data-port="${CSS.escape(`${id}.${port}`)}"]`);
  if (!box || !node) return null;
  const y = portEl ? portEl.offsetTop + portEl.offsetHeight / 2 : box.offsetHeight / 2;
  return [side === "in" ? node.x : node.x + box.offsetWidth, node.y + y];
}

/** The arrows: one SVG group per arrow, kept while the arrow exists (so focus and clicks survive a redraw). */
function drawWires() {
  const { width, height } = extent();
  wires.setAttribute("width", String(width));
  wires.setAttribute("height", String(height));
  if (!wires.querySelector("defs")) wires.append(arrowHead());
  const kept = new Map([...wires.querySelectorAll("g.edge")].map((g) => [g.dataset.edge, g]));
  const drawn = new Set();
  for (const edge of edges()) {
    const a = portPoint(edge.from.node, edge.from.port, "out");
    const b = portPoint(edge.to.node, edge.to.port, "in");
    if (!a || !b) continue;
    const key = `${edge.from.node}.${edge.from.port}->${edge.to.node}.${edge.to.port}`;
    const group = kept.get(key) || wires.appendChild(makeEdge(edge, key));
    drawn.add(key);
    const bend = Math.max(40, Math.abs(b[0] - a[0]) / 2);
    const d = `M ${a[0]} ${a[1]} C ${a[0] + bend} ${a[1]}, ${b[0] - bend} ${b[1]}, ${b[0] - 4} ${b[1]}`;
    for (const path of group.querySelectorAll("path")) if (path.getAttribute("d") !== d) path.setAttribute("d", d);
    const selected = state.selected?.edge?.node === edge.to.node && state.selected.edge.port === edge.to.port;
    group.classList.toggle("selected", selected);
    if (selected) placeEdgeButton(edge, a, b);
  }
  for (const [key, group] of kept) if (!drawn.has(key)) group.remove();
  if (!state.selected?.edge) byId("edge-remove").hidden = true;
}

function makeEdge(edge, key) {
  const name = `${edge.from.node}.${edge.from.port} → ${edge.to.node}.${edge.to.port}`;
  const group = svg("g", {
    class: "edge",
    tabindex: "0",
    role: "button",
    "aria-label": `arrow ${name} (${edge.kind}); Delete removes it`,
    "data-edge": key,
  });
  const title = svg("title");
  title.textContent = `${name} (${edge.kind})`;
  group.append(title, svg("path", { class: "edge-hit" }), svg("path", { class: "edge-line", "marker-end": "url(#arrow)" }));
  const pick = (event) => {
    event.stopPropagation();
    select({ edge: { ...edge.to } });
  };
  group.addEventListener("click", pick);
  group.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") pick(event);
  });
  return group;
}

function arrowHead() {
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "6", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }));
  defs.append(marker);
  return defs;
}

function placeEdgeButton(edge, a, b) {
  const button = byId("edge-remove");
  button.hidden = false;
  button.style.left = `${(a[0] + b[0]) / 2 - 11}px`;
  button.style.top = `${(a[1] + b[1]) / 2 - 11}px`;
  button.setAttribute("aria-label", `Remove the arrow ${edge.from.node}.${edge.from.port} → ${edge.to.node}.${edge.to.port}`);
  button.onclick = (event) => {
    event.stopPropagation();
    removeEdge(edge.to);
    say("Arrow removed.");
  };
}

// --- moving -----------------------------------------------------------------------------------------------------

function startDrag(event, id, box) {
  if (event.button !== 0 || event.target.closest("button")) return;
  const node = state.nodes.get(id);
  const [sx, sy] = stagePoint(event);
  const [ox, oy] = [node.x, node.y];
  let moved = false;
  box.dataset.dragged = "0";
  box.setPointerCapture(event.pointerId);
  const move = (e) => {
    const [x, y] = stagePoint(e);
    if (!moved && Math.hypot(x - sx, y - sy) < 4) return;
    moved = true;
    box.dataset.dragged = "1";
    node.x = Math.max(0, ox + x - sx);
    node.y = Math.max(0, oy + y - sy);
    box.style.left = `${node.x}px`;
    box.style.top = `${node.y}px`;
    drawWires();
  };
  const up = () => {
    box.removeEventListener("pointermove", move);
    box.removeEventListener("pointerup", up);
    box.removeEventListener("pointercancel", up);
    if (moved) {
      resize();
      emit("moved", id);
      setTimeout(() => (box.dataset.dragged = "0"), 0);
    }
  };
  box.addEventListener("pointermove", move);
  box.addEventListener("pointerup", up);
  box.addEventListener("pointercancel", up);
}

function boxKey(event, id, box) {
  if (event.target !== box) return;
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    select({ node: id });
    return;
  }
  const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (steps[event.key]) {
    event.preventDefault();
    const node = state.nodes.get(id);
    const step = event.shiftKey ? 40 : 10;
    node.x = Math.max(0, node.x + steps[event.key][0] * step);
    node.y = Math.max(0, node.y + steps[event.key][1] * step);
    render();
    emit("moved", id);
  }
}

function editing(target) {
  return target instanceof Element && (target.closest("input, select, textarea, [contenteditable]") || target.closest("dialog"));
}

function onKey(event) {
  if (editing(event.target)) return;
  if (event.key === "Escape") {
    if (pending) {
      cancelPending();
      say("Connection cancelled.");
    } else select(null);
    return;
  }
  if (event.key !== "Delete" && event.key !== "Backspace") return;
  if (state.selected?.edge) {
    event.preventDefault();
    removeEdge(state.selected.edge);
    say("Arrow removed.");
  } else if (state.selected?.node && state.nodes.has(state.selected.node)) {
    event.preventDefault();
    const id = state.selected.node;
    removeNode(id);
    say(`Removed "${id}".`);
    byId("canvas").focus();
  }
}

// --- size and zoom ----------------------------------------------------------------------------------------------

function resize() {
  const { width, height } = extent();
  stage.style.width = `${width}px`;
  stage.style.height = `${height}px`;
  stage.style.transform = zoom === 1 ? "" : `scale(${zoom})`;
  const sizer = byId("sizer");
  sizer.style.width = `${width * zoom}px`;
  sizer.style.height = `${height * zoom}px`;
  byId("zoom-fit").textContent = `${Math.round(zoom * 100)}%`;
}

function setZoom(value) {
  zoom = Math.min(1.5, Math.max(0.4, value));
  resize();
  drawWires();
}

/** Zoom so every box shows (never above 100%). */
export function fit() {
  const canvas = byId("canvas");
  const { width, height } = extent();
  if (!width || !height) return setZoom(1);
  setZoom(Math.min(1, (canvas.clientWidth - 8) / width, (canvas.clientHeight - 8) / height));
}

/** After a graph is loaded or the window resized: zoom out to show every box, but not below 75% (readable). */
export function fitIfNeeded() {
  const canvas = byId("canvas");
  const { width, height } = extent();
  if (!width || !height || !canvas.clientWidth) return;
  const best = Math.min(1, (canvas.clientWidth - 8) / width, (canvas.clientHeight - 8) / height);
  setZoom(Math.max(0.75, best));
}

/** The box element of a node (for focus after keyboard actions). */
export const boxElement = (id) => boxes.get(id) || null;
