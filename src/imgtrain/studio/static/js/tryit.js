// Try it: an image chosen or dropped, its preview, and the selected run's trained model's top classes as bars.
import { api, url } from "./api.js";
import { byId, el, fill } from "./dom.js";
import { percent } from "./labels.js";
import { on, state } from "./state.js";

let preview = null; // the object URL shown

export function initTryIt() {
  const input = byId("try-file");
  input.addEventListener("change", () => input.files[0] && tryImage(input.files[0]));
  const drop = byId("try-drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = [...(event.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) tryImage(file);
    else showMessage("Drop an image file (JPEG, PNG, …).", "error");
  });
  on("run", () => update());
  update();
}

/** The selected run's train and sweep boxes whose model is done. */
export function trainedNodes() {
  const nodes = state.run?.layout?.nodes || {};
  const requested = new Map((state.run?.request?.nodes || []).map((n) => [n.id, n.module]));
  return Object.entries(nodes)
    .filter(([id, n]) => ["train", "sweep"].includes(n.module || requested.get(id)) && n.status === "done")
    .map(([id]) => id);
}

function update() {
  const trained = trainedNodes();
  const tab = byId("tab-try");
  const why = !state.run ? "Select a finished run (Runs view, or Submit one) to try its model." : trained.length ? "" : `Run #${state.run.id} has no trained model yet: select a finished run.`;
  tab.disabled = Boolean(why);
  tab.title = why || "Classify an image with this run's trained model";
  byId("try-why").textContent = why;
  byId("try-form").hidden = Boolean(why);
  const select = byId("try-node");
  const before = select.value;
  fill(select, trained.map((id) => el("option", { value: id }, id)));
  if (trained.includes(before)) select.value = before;
  byId("try-node-row").hidden = trained.length < 2;
}

function showMessage(text, kind = "info") {
  const line = byId("try-message");
  line.textContent = text;
  line.dataset.kind = kind;
}

async function tryImage(file) {
  if (preview) URL.revokeObjectURL(preview);
  preview = URL.createObjectURL(file);
  fill(byId("try-preview"), el("img", { src: preview, alt: `the image tried: ${file.name}` }));
  fill(byId("try-result"));
  const node = byId("try-node").value || trainedNodes()[0];
  if (!state.run || !node) return showMessage("Select a finished run first.", "error");
  showMessage(`Classifying ${file.name} with ${node} of run #${state.run.id}…`);
  try {
    const answer = await api(url(`/api/runs/${state.run.id}/predict`, { node }), { method: "POST", body: file, contentType: file.type || "application/octet-stream" });
    showMessage("");
    fill(byId("try-result"),
      el("p", { class: "label" }, answerText(answer.label)),
      el("ol", { class: "bars", "aria-label": "top classes" }, (answer.top || []).map((t) =>
        el("li", { class: "bar-row" },
          el("span", { class: "bar-label" }, t.class),
          el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: { width: `${(100 * t.probability).toFixed(1)}%` } })),
          el("span", { class: "bar-value" }, percent(t.probability))))));
  } catch (error) {
    showMessage(error.message, "error");
  }
}

/** A model's answer as words: one class, or a multi-label model's list of classes (possibly none). */
function answerText(label) {
  if (!Array.isArray(label)) return label;
  return label.length ? label.join(", ") : "none of the classes";
}
