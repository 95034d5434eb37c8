// Runs: submit the graph, follow the selected run's events (box states, progress, epochs), Stop and Resume, and
// re-attach to the running run when the page is reloaded.
import { api } from "./api.js";
import { byId, el, fill } from "./dom.js";
import { loadGraph, toRequest } from "./graph.js";
import { emit, on, state } from "./state.js";

export const ACTIVE = ["queued", "running"];
export const RESUMABLE = ["stopped", "interrupted", "failed"];
const STOPPED_NOTE = "stopped — Resume continues";
let source = null; // the EventSource of the followed run
let followed = null;

export function initRuns() {
  byId("submit").addEventListener("click", submit);
  byId("stop").addEventListener("click", stop);
  byId("resume").addEventListener("click", resume);
  on("run", () => renderHeader());
  renderHeader();
}

/** On load: the running (or queued) run if there is one, else the run named in the address (#run=N), else null. */
export async function attach() {
  const runs = await refreshRuns();
  const active = runs.filter((r) => ACTIVE.includes(r.status)).sort((a, b) => (a.status === "running" ? -1 : 0) - (b.status === "running" ? -1 : 0) || b.id - a.id)[0];
  const named = Number(new URLSearchParams(location.hash.slice(1)).get("run"));
  const chosen = active || runs.find((r) => r.id === named);
  if (!chosen) return null;
  await selectRun(chosen.id, { loadCanvas: true });
  return chosen.id;
}

/** GET /api/runs into state.runs (the Runs view listens to "runs"). */
export async function refreshRuns() {
  const runs = await api("/api/runs");
  state.runs = Array.isArray(runs) ? runs : [];
  emit("runs", state.runs);
  return state.runs;
}

/** Show a run: its state on the boxes, its curves; with loadCanvas, its graph and parameters on the canvas. */
export async function selectRun(id, { loadCanvas = false } = {}) {
  const run = await api(`/api/runs/${id}`);
  stopFollowing();
  state.run = normalised(run);
  state.live = emptyLive();
  seedLive(state.run);
  if (loadCanvas && run.request) loadGraph(run.request, run.request.positions || run.positions, byId("canvas").clientWidth);
  history.replaceState(null, "", `#run=${id}`);
  emit("run", { id, changed: true });
  emit("live");
  if (ACTIVE.includes(run.status)) follow(id);
  return state.run;
}

function normalised(run) {
  run.layout = run.layout || { order: [], nodes: {} };
  run.layout.nodes = run.layout.nodes || {};
  return run;
}

function emptyLive() {
  return { batches: new Map(), epochs: new Map(), current: null, log: [] };
}

function seedLive(run) {
  for (const [node, rows] of Object.entries(run.batches || {})) for (const row of rows) addBatch(node, row);
  for (const [node, rows] of Object.entries(run.history || {})) for (const row of rows) addEpoch(node, row);
}

/** A node's rows in `map`; a sweep box's are its running trial's (`rows.trial`): a row of the next trial starts
 * them afresh (the box's panel overlays every trial's curve). */
function rowsOf(map, node, trial) {
  let rows = map.get(node);
  if (!rows || (trial != null && rows.trial !== trial)) {
    rows = new Map();
    rows.trial = trial ?? null;
    map.set(node, rows);
  }
  return rows;
}

function addBatch(node, row) {
  if (row.epoch == null || row.batch == null) return;
  rowsOf(state.live.batches, node, row.trial).set(`${row.epoch}/${row.batch}`, row);
}

function addEpoch(node, row) {
  if (row.epoch == null) return;
  rowsOf(state.live.epochs, node, row.trial).set(row.epoch, row);
}

function follow(id) {
  stopFollowing();
  followed = id;
  source = new EventSource(`/api/runs/${id}/events`, { withCredentials: true });
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (state.run?.id === id) applyEvent(event);
  };
  source.addEventListener("end", () => {
    stopFollowing();
    if (state.run?.id === id) reload(id);
  });
  source.onerror = () => {
    if (source && source.readyState === EventSource.CLOSED) {
      stopFollowing();
      setTimeout(() => state.run?.id === id && reload(id), 2000);
    }
  };
}

function stopFollowing() {
  if (source) source.close();
  source = null;
  followed = null;
}

/** The run as the server has it now (after its end, or a lost stream); follows it again if still active. */
async function reload(id) {
  try {
    const run = normalised(await api(`/api/runs/${id}`));
    if (state.run?.id !== id) return;
    state.run = run;
    seedLive(run);
    emit("run", { id });
    emit("live");
    if (ACTIVE.includes(run.status) && followed !== id) follow(id);
  } catch (error) {
    showRunError(error.message);
  }
  refreshRuns().catch(() => {});
}

function layoutNode(id) {
  const nodes = state.run.layout.nodes;
  return nodes[id] || (nodes[id] = { status: "queued", progress: null, error: null });
}

/** One event of the followed run, into state.run and state.live. */
export function applyEvent(event) {
  const run = state.run;
  if (event.trial != null && event.node && layoutNode(event.node).trial !== event.trial) {
    layoutNode(event.node).trial = event.trial; // a sweep's next trial: its panel shows those ended so far
    emit("run", { id: run.id });
  }
  if (event.kind === "step" && event.node) {
    const entry = layoutNode(event.node);
    entry.status = event.status;
    if ("error" in event) entry.error = event.error ?? null;
    if (event.status === "running" && ACTIVE.includes(run.status)) run.status = "running";
    if (event.status === "done" && entry.progress) entry.progress.done = entry.progress.total;
    emit("run", { id: run.id });
  } else if (event.kind === "progress" && event.node) {
    const entry = layoutNode(event.node);
    if (entry.status === "queued") entry.status = "running";
    if (event.batch !== undefined && event.batches) {
      const epochs = event.epochs || 1;
      entry.progress = { done: (event.epoch - 1) * event.batches + event.batch, total: epochs * event.batches, unit: "batches" };
      addBatch(event.node, event);
    } else if (event.total !== undefined) {
      entry.progress = { done: event.done, total: event.total, unit: event.unit };
    }
    state.live.current = { ...event, at: Date.now() };
    emit("live", event);
  } else if (event.kind === "epoch" && event.node) {
    addEpoch(event.node, event);
    emit("live", event);
  } else if (event.kind === "log") {
    state.live.log.push(event);
    if (state.live.log.length > 50) state.live.log.shift();
    emit("live", event);
  }
}

async function submit() {
  const button = byId("submit");
  button.disabled = true;
  showRunError("");
  try {
    const { id } = await api("/api/runs", { method: "POST", json: toRequest() });
    await selectRun(id);
    refreshRuns().catch(() => {});
  } catch (error) {
    if (error.problems?.length) {
      state.problems = error.problems;
      emit("problems", error.problems);
    }
    showRunError(error.message);
  } finally {
    button.disabled = false;
    emit("run", {});
  }
}

async function stop() {
  if (!state.run) return;
  byId("stop").disabled = true;
  try {
    await api(`/api/runs/${state.run.id}/stop`, { method: "POST" });
    showRunError("");
    byId("run-note").textContent = "stopping…";
  } catch (error) {
    showRunError(error.message);
    renderHeader();
  }
}

async function resume() {
  if (!state.run) return;
  const id = state.run.id;
  byId("resume").disabled = true;
  try {
    await api(`/api/runs/${id}/resume`, { method: "POST" });
    showRunError("");
    await selectRun(id);
    if (!source) follow(id);
    refreshRuns().catch(() => {});
  } catch (error) {
    showRunError(error.message);
    renderHeader();
  }
}

function showRunError(message) {
  const line = byId("run-error");
  line.textContent = message;
  line.hidden = !message;
}

/** The header's run: "run #7", its state (a dot and a word), Stop/Resume as the state allows. */
function renderHeader() {
  const run = state.run;
  const status = run?.status || "";
  byId("stop").disabled = !run || !ACTIVE.includes(status);
  byId("resume").disabled = !run || !RESUMABLE.includes(status);
  const box = byId("run-state");
  box.dataset.status = status || "none";
  if (!run) {
    fill(box, el("span", { class: "muted" }, "no run selected"));
    byId("run-note").textContent = "";
    return;
  }
  fill(box, el("span", { class: "dot", "aria-hidden": "true" }), ` run #${run.id} · `, el("span", { class: "run-status" }, status));
  let note = "";
  if (status === "stopped") note = run.note || STOPPED_NOTE;
  else if (status === "interrupted") note = run.note || "interrupted — Resume continues";
  else if (status === "failed" && run.error) note = `${run.error.name ? `${run.error.name}: ` : ""}${run.error.message}`;
  const noteEl = byId("run-note");
  noteEl.textContent = note;
  noteEl.dataset.kind = status === "failed" ? "error" : "info";
}
