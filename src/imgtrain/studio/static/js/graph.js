// The run as a graph of boxes: adding, connecting and removing them, the request the API takes, and a layout.
import { emit, moduleOf, state } from "./state.js";

export const BOX_WIDTH = 150;
const COLUMN = [170, 236]; // the least and most from one layer's left edge to the next one's
const MARGIN = 24;
const ID = /^[a-z0-9-]{1,32}$/;
export const MODEL_MODULES = ["resnet", "densenet", "catalog"];

/** The first free id for a module: "train", then "train-2", "train-3"... */
export function nextId(module) {
  const base = module.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 28) || "node";
  if (!state.nodes.has(base)) return base;
  for (let n = 2; ; n++) if (!state.nodes.has(`${base}-${n}`)) return `${base}-${n}`;
}

/** Each parameter's default, from the module's declarations. */
export function defaults(module) {
  const parameters = state.modules[module]?.parameters || {};
  return Object.fromEntries(Object.entries(parameters).map(([name, d]) => [name, structuredClone(d.default)]));
}

/** Add a box of `module` at (x, y); returns the node. */
export function addNode(module, x, y, params = {}, id = nextId(module)) {
  const node = { id, module, params: { ...defaults(module), ...params }, inputs: {}, x: Math.max(0, x), y: Math.max(0, y) };
  state.nodes.set(id, node);
  return node;
}

/** Where a new box goes: below the lowest box of the first column that has room, else to the right. */
export function freeSpot() {
  const boxes = [...state.nodes.values()];
  if (!boxes.length) return [MARGIN, MARGIN];
  return [MARGIN, Math.max(...boxes.map((b) => b.y + boxHeight(b))) + 28];
}

export function removeNode(id) {
  state.nodes.delete(id);
  for (const node of state.nodes.values())
    for (const [port, source] of Object.entries(node.inputs)) if (source.node === id) delete node.inputs[port];
  if (state.selected?.node === id || state.selected?.edge?.node === id) state.selected = null;
  emit("graph");
}

export function removeEdge({ node, port }) {
  const target = state.nodes.get(node);
  if (target) delete target.inputs[port];
  if (state.selected?.edge?.node === node && state.selected.edge.port === port) state.selected = null;
  emit("graph");
}

/** The kind an output port carries, or an input port takes. */
export function portKind(nodeId, port, side) {
  const node = state.nodes.get(nodeId);
  return moduleOf(node)[side === "in" ? "inputs" : "outputs"]?.[port] ?? null;
}

/** Connect an output port to an input port; {ok} or {ok: false, message} saying why not. */
export function connect(from, to) {
  const given = portKind(from.node, from.port, "out");
  const wanted = portKind(to.node, to.port, "in");
  const name = (end) => `${end.node}.${end.port}`;
  if (from.node === to.node) return { ok: false, message: `A box cannot feed itself (${name(from)} → ${name(to)}).` };
  if (given !== wanted)
    return {
      ok: false,
      message: `${name(to)} takes ${wanted}, but ${name(from)} gives ${given}: connect an output of kind "${wanted}".`,
    };
  if (feeds(to.node, from.node))
    return { ok: false, message: `${name(from)} → ${name(to)} would make a cycle: ${to.node} already feeds ${from.node}.` };
  state.nodes.get(to.node).inputs[to.port] = { node: from.node, port: from.port };
  emit("graph");
  return { ok: true };
}

/** Whether `upstream` feeds `downstream`, directly or through other boxes (or is it). */
export function feeds(upstream, downstream, seen = new Set()) {
  if (upstream === downstream) return true;
  if (seen.has(downstream)) return false;
  seen.add(downstream);
  const node = state.nodes.get(downstream);
  return Object.values(node?.inputs || {}).some((source) => feeds(upstream, source.node, seen));
}

/** Every arrow: {from: {node, port}, to: {node, port}, kind}. */
export function edges() {
  const out = [];
  for (const node of state.nodes.values())
    for (const [port, source] of Object.entries(node.inputs))
      if (state.nodes.has(source.node)) out.push({ from: source, to: { node: node.id, port }, kind: portKind(node.id, port, "in") });
  return out;
}

/** The graph as POST /api/check and /api/runs take it. */
export function toRequest() {
  const nodes = [...state.nodes.values()].map((node) => {
    const entry = { id: node.id, module: node.module };
    if (Object.keys(node.params).length) entry.params = { ...node.params };
    const inputs = Object.entries(node.inputs).filter(([, s]) => state.nodes.has(s.node));
    if (inputs.length) entry.inputs = Object.fromEntries(inputs.map(([port, s]) => [port, `${s.node}.${s.port}`]));
    return entry;
  });
  const positions = Object.fromEntries([...state.nodes.values()].map((n) => [n.id, [Math.round(n.x), Math.round(n.y)]]));
  return { nodes, positions };
}

/**
 * Replace the canvas with a graph ({nodes}): a run's request, drawn where its `positions` say (where the page drew
 * it), or the default graph, laid out to fit `width` (the canvas's).
 */
export function loadGraph(graph, positions, width) {
  state.nodes.clear();
  state.selected = null;
  for (const entry of graph?.nodes || []) {
    if (!ID.test(entry.id)) continue;
    const node = addNode(entry.module, 0, 0, entry.params || {}, entry.id);
    for (const [port, ref] of Object.entries(entry.inputs || {})) node.inputs[port] = parseRef(ref);
  }
  resolvePorts();
  const placed = positions && [...state.nodes.keys()].every((id) => Array.isArray(positions[id]));
  if (placed) for (const node of state.nodes.values()) [node.x, node.y] = positions[node.id].map(Number);
  else layOut(width);
  emit("graph", { loaded: true });
}

/** "node" (its first output) or "node.port" as {node, port}. */
export function parseRef(ref) {
  const text = String(ref);
  const dot = text.indexOf(".");
  if (dot >= 0) return { node: text.slice(0, dot), port: text.slice(dot + 1) };
  return { node: text, port: null };
}

/** Ports named by "node" alone get the node's first output, once every node is known. */
function resolvePorts() {
  for (const node of state.nodes.values())
    for (const source of Object.values(node.inputs))
      if (source.port === null) source.port = Object.keys(moduleOf(state.nodes.get(source.node)).outputs || {})[0] ?? "";
}

/** A box's height before it is drawn: its head, status and one line per port. */
export function boxHeight(node) {
  const module = moduleOf(node);
  return 62 + 20 * Math.max(1, Object.keys(module.inputs || {}).length, Object.keys(module.outputs || {}).length);
}

/**
 * Left to right by layers: a box's layer is one more than its deepest input's, and a box without inputs sits just
 * before the first box it feeds (so Transform and ResNet stand next to Train); in a layer, boxes stack in order.
 */
export function layOut(width = 0) {
  const layer = new Map();
  const depth = (id, seen = new Set()) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const sources = Object.values(state.nodes.get(id)?.inputs || {}).filter((s) => state.nodes.has(s.node));
    const d = sources.length ? 1 + Math.max(...sources.map((s) => depth(s.node, seen))) : 0;
    layer.set(id, d);
    return d;
  };
  for (const node of state.nodes.values()) depth(node.id);
  for (const node of state.nodes.values()) {
    if (Object.keys(node.inputs).length) continue;
    const consumers = edges().filter((e) => e.from.node === node.id).map((e) => layer.get(e.to.node));
    if (consumers.length) layer.set(node.id, Math.max(0, Math.min(...consumers) - 1));
  }
  const layers = Math.max(0, ...layer.values());
  const room = layers ? Math.floor((width - 2 * MARGIN - BOX_WIDTH) / layers) : COLUMN[1];
  const column = Math.min(COLUMN[1], Math.max(COLUMN[0], room));
  const bottoms = new Map();
  for (const node of state.nodes.values()) {
    const d = layer.get(node.id);
    const top = bottoms.get(d) ?? MARGIN;
    node.x = MARGIN + d * column;
    node.y = top;
    bottoms.set(d, top + boxHeight(node) + 22);
  }
}

/** The model box feeding a train box, and its module. */
export function modelOf(trainId) {
  const source = state.nodes.get(trainId)?.inputs.model;
  return source ? state.nodes.get(source.node) || null : null;
}

/**
 * "Compare two models": a second model box, with a Train, Score and Evaluate chain fed by the same Split (and the
 * same transformation), the Train's parameters copied so the two differ only by the model. Returns the new ids.
 */
export function addComparison() {
  const train = [...state.nodes.values()].find((n) => n.module === "train");
  if (!train) return { ok: false, message: "Compare two models needs a Train PyTorch Model box to copy." };
  const model = modelOf(train.id);
  const family = MODEL_MODULES.find((m) => m !== model?.module && state.modules[m]) || model?.module || "resnet";
  const top = Math.max(...[...state.nodes.values()].map((n) => n.y + boxHeight(n))) + 28;
  const x = (n) => (n ? n.x : MARGIN);
  const added = addNode(family, x(model), top);
  const train2 = addNode("train", x(train), top, { ...train.params });
  train2.inputs.model = { node: added.id, port: Object.keys(moduleOf(added).outputs)[0] };
  for (const port of ["train", "valid", "transform"]) if (train.inputs[port]) train2.inputs[port] = { ...train.inputs[port] };
  const score = [...state.nodes.values()].find((n) => n.module === "score" && n.inputs.model?.node === train.id);
  const score2 = addNode("score", score ? score.x : train.x + COLUMN[0], top);
  score2.inputs.model = { node: train2.id, port: "model" };
  const images = score?.inputs.images || train.inputs.valid;
  if (images) score2.inputs.images = { ...images };
  const evaluate = [...state.nodes.values()].find((n) => n.module === "evaluate" && n.inputs.scores?.node === score?.id);
  const evaluate2 = addNode("evaluate", evaluate ? evaluate.x : score2.x + COLUMN[0], top);
  evaluate2.inputs.scores = { node: score2.id, port: "scores" };
  evaluate2.inputs.model = { node: train2.id, port: "model" };
  emit("graph");
  return { ok: true, ids: [added.id, train2.id, score2.id, evaluate2.id] };
}

/** The extent of the boxes, for the canvas's scrolling area. */
export function extent() {
  const boxes = [...state.nodes.values()];
  return {
    width: Math.max(0, ...boxes.map((b) => b.x + BOX_WIDTH)) + MARGIN,
    height: Math.max(0, ...boxes.map((b) => b.y + boxHeight(b))) + MARGIN,
  };
}
