// The page's state, in one place, and the topics its parts listen to.
//   "graph"      boxes or arrows added, removed or moved (the canvas redraws; a check is scheduled)
//   "params"     a parameter's value changed (a check is scheduled)
//   "selection"  another box or arrow is selected
//   "problems"   a check answered
//   "run"        the selected run changed, or its state did
//   "live"       a progress or epoch event of the selected run

export const state = {
  modules: {}, // name -> {title, inputs, outputs, optional_inputs, parameters}
  palette: [],
  defaultGraph: null,
  nodes: new Map(), // id -> {id, module, params, inputs: {port: {node, port}}, x, y}
  selected: null, // {node: id} or {edge: {node, port}} (the arrow into node's input port)
  problems: [], // [{node, field, message}] from the last check
  facts: {}, // node -> what the last check found (images, classes)
  checking: false,
  run: null, // the selected run, as GET /api/runs/{id} answers, kept current by its events
  live: null, // the selected run's live series (runs.js)
  runs: [], // GET /api/runs
};

const bus = new EventTarget();

export function on(topic, listener) {
  bus.addEventListener(topic, (event) => listener(event.detail));
}

export function emit(topic, detail = null) {
  bus.dispatchEvent(new CustomEvent(topic, { detail }));
}

/** The module declaration of a node (or an empty one for an unknown module). */
export function moduleOf(node) {
  return state.modules[node?.module] || { title: node?.module || "?", inputs: {}, outputs: {}, parameters: {} };
}

/** The selected box's node, or null. */
export function selectedNode() {
  return state.selected?.node ? state.nodes.get(state.selected.node) || null : null;
}

export function select(selection) {
  state.selected = selection;
  emit("selection", selection);
}
