// Checks in place: after each edit (debounced), POST /api/check with the graph; the answer's problems go to their
// field, their box or the graph's banner, and Submit waits until there are none and the images are chosen.
import { api } from "./api.js";
import { byId, el, fill } from "./dom.js";
import { toRequest } from "./graph.js";
import { emit, on, state } from "./state.js";

const DEBOUNCE_MS = 400;
let timer = null;
let sequence = 0;
let checkedOk = false;

export function initChecks() {
  on("graph", () => scheduleCheck());
  on("params", () => scheduleCheck());
  on("problems", () => showBanner());
  on("run", () => updateSubmit());
}

export function scheduleCheck() {
  clearTimeout(timer);
  checkedOk = false;
  state.checking = true;
  updateSubmit();
  timer = setTimeout(runCheck, DEBOUNCE_MS);
}

async function runCheck() {
  const mine = ++sequence;
  if (!state.nodes.size) return finish(mine, [], {}, false);
  try {
    const answer = await api("/api/check", { method: "POST", json: toRequest() });
    finish(mine, [], answer?.facts || {}, true);
  } catch (error) {
    const problems = error.problems?.length ? error.problems : [{ node: null, field: null, message: error.message }];
    finish(mine, problems, {}, false);
  }
}

function finish(mine, problems, facts, ok) {
  if (mine !== sequence) return; // a later edit's check is on its way
  state.problems = problems;
  state.facts = facts;
  state.checking = false;
  checkedOk = ok;
  emit("problems", problems);
  updateSubmit();
}

/** The convert boxes that have no source yet. */
export function missingSources() {
  const converts = [...state.nodes.values()].filter((n) => n.module === "convert");
  return converts.length ? converts.filter((n) => !n.params.source) : null;
}

/** Submit is enabled when the last check passed, no check is pending and every Convert has its images. */
export function updateSubmit() {
  const submit = byId("submit");
  const missing = missingSources();
  let why = "";
  if (!state.nodes.size) why = "The canvas is empty: add boxes from the palette.";
  else if (missing === null) why = "Add a Convert to Image Directory box and choose its images.";
  else if (missing.length) why = `Choose the images first (${missing.map((n) => n.id).join(", ")}: Browse…).`;
  else if (state.checking) why = "Checking…";
  else if (state.problems.length)
    why = `${state.problems.length} problem${state.problems.length > 1 ? "s" : ""} to fix first (shown in red).`;
  else if (!checkedOk) why = "The graph has not been checked yet.";
  submit.disabled = Boolean(why);
  submit.title = why || "Run the graph as drawn";
  byId("submit-why").textContent = why === "Checking…" ? why : why ? why : "ready";
  byId("submit-why").dataset.kind = why && why !== "Checking…" ? "blocked" : "ok";
}

/** Problems of the graph as a whole (node null): a banner over the canvas. */
function showBanner() {
  const banner = byId("graph-banner");
  const graphProblems = state.problems.filter((p) => p.node === null || !state.nodes.has(p.node));
  banner.hidden = graphProblems.length === 0;
  fill(banner, graphProblems.map((p) => el("p", {}, p.message)));
}
