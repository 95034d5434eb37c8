"""The studio's page: one self-contained HTML file (no external assets), talking to the API with the page's token."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imgtrain studio</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;color:#222}
header{display:flex;gap:1em;align-items:center;padding:.6em 1em;background:#20364f;color:#fff}
header h1{font-size:16px;margin:0}
main{display:grid;grid-template-columns:1fr 320px;gap:1em;padding:1em}
.pipeline{display:flex;flex-wrap:wrap;gap:.4em;align-items:center}
.box{border:1px solid #789;border-radius:6px;padding:.5em .8em;background:#f4f7fa;cursor:pointer}
pre{overflow:auto;max-width:320px}.drop{border:2px dashed #99a;padding:1em;max-width:600px}figure.error{display:inline-block;margin:4px;font-size:12px}.box.selected{outline:2px solid #2a6fb0}.box:focus{outline:2px dashed #2a6fb0}.thumb{margin:2px;image-rendering:pixelated}.box .dot{display:inline-block;width:.6em;height:.6em;border-radius:50%;
background:#bbb;margin-right:.4em}.running .dot{background:#e0a000}.finished .dot{background:#2a2}
.failed .dot{background:#c22}
label{display:block;margin:.3em 0}input{width:7em}#error{color:#b00;white-space:pre-wrap}
canvas{border:1px solid #ccc;background:#fff}table{border-collapse:collapse}td,th{padding:2px 6px;border:1px solid #ddd}
</style></head><body>
<header><h1>imgtrain studio</h1><span id="root"></span><button id="submit">Submit</button>
<button id="stop" disabled>Stop</button><button id="resume" disabled>Resume</button><span id="status"></span></header>
<main><section>
<div class="pipeline" id="pipeline"></div>
<p><label>Training images (folder, archive, manifest or image directory under the root)
<select id="train"></select></label>
<label>Validation images <select id="valid"><option value="">split the training images</option></select></label></p>
<div id="progress"></div>
<canvas id="chart" width="640" height="220" aria-label="loss and accuracy per epoch"></canvas>
<div id="metrics"></div>
<h2>Try it</h2><div id="drop" class="drop">drop an image here, or
<input type="file" id="try" accept="image/*" aria-label="an image to classify"></div><div id="answer"></div>
<h2>Runs</h2><table id="runs"><tr><th>run</th><th>status</th><th>best accuracy</th><th>compare</th></tr></table>
<canvas id="compare" width="640" height="160" aria-label="validation accuracy of the compared runs"></canvas>
</section>
<aside><h2 id="module">Train PyTorch Model</h2><form id="params"></form><p id="error" role="alert"></p>
<div id="output"></div></aside></main>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
const api = (path, options = {}) => fetch(path + (path.includes("?") ? "&" : "?") + "token=" + token, options)
  .then(async r => { const body = await r.json(); if (!r.ok) throw new Error(body.error || r.statusText); return body; });
// [name, the parameters it edits, the output it writes]
const MODULES = [["Convert to Image Directory", null, "train-images"], ["Split Image Directory", null, "train"],
  ["Init Image Transformation", "transform", null], ["ResNet", "model", "untrained"],
  ["Train PyTorch Model", "train_params", "model"], ["Score Image Model", null, "scores.csv"],
  ["Evaluate Model", null, "evaluation"]];
let PARAMS = {}, values = {};  // defaults from the library's dataclasses (GET /api/parameters)
let selected = "train_params", current = null, source = null;
function boxState(run, output) {  // finished when its output exists; the first missing one is where the run is
  if (!run) return "";
  if (output === null) return "finished";
  if (output in run.outputs || (output === "train-images" && run.outputs.train)) return "finished";
  const first = MODULES.find(([, , o]) => o && !(o in run.outputs) && !(o === "train-images" && run.outputs.train));
  return first && first[2] === output ? run.status : "";
}
function drawPipeline(run) {
  const el = document.getElementById("pipeline"); el.innerHTML = "";
  MODULES.forEach(([name, key, output], i) => {
    const box = document.createElement("div"), state = boxState(run, output);
    box.className = "box " + state + (key && key === selected ? " selected" : "");
    box.innerHTML = '<span class="dot"></span>' + name; box.tabIndex = 0; box.title = state;
    box.onclick = () => {
      if (key) { selected = key; document.getElementById("module").textContent = name; drawForm(); drawPipeline(run); }
      if (run && state === "finished" && output) showOutput(run.id, output);
    };
    box.onkeydown = e => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); box.onclick(); } };
    el.appendChild(box);
    if (i < MODULES.length - 1) el.appendChild(document.createTextNode(" \\u2192 "));
  });
}
async function showOutput(id, output) {
  const out = document.getElementById("output"); out.replaceChildren();
  const title = document.createElement("h3"); title.textContent = output; out.appendChild(title);
  let summary; try { summary = await api(`/api/runs/${id}/outputs/${output}`); }
  catch (e) { out.append(e.message); return; }
  const text = document.createElement("pre");
  if (summary.kind === "image directory") {
    text.textContent = `${summary.images} images: ` + Object.entries(summary.classes).map(([c, n]) => `${c} ${n}`)
      .join(", "); out.appendChild(text);
    for (const sample of summary.samples) { const img = document.createElement("img"); img.className = "thumb";
      img.src = `/api/runs/${id}/files/${sample}?token=${token}`; img.alt = sample; img.width = 64; out.appendChild(img); }
  } else if (summary.kind === "scores") { text.textContent = summary.head.join("\\n"); out.appendChild(text); }
  else { text.textContent = JSON.stringify(summary.metrics || summary, null, 1); out.appendChild(text); }
}
function drawForm() {
  const form = document.getElementById("params"); form.innerHTML = "";
  for (const [name, value] of Object.entries(values[selected])) {
    const label = document.createElement("label");
    const choices = name === "family" ? Object.keys(MODELS) : name === "model_name" ? MODELS[values.model.family]
      : CHOICES[name] || null;
    const input = document.createElement(choices ? "select" : "input");
    input.name = name;
    for (const choice of choices || []) { const o = document.createElement("option"); o.value = o.textContent = choice;
      input.appendChild(o); }
    if (typeof value === "boolean") { input.type = "checkbox"; input.checked = value; }
    else input.value = value;
    const range = RANGES[name], hint = document.createElement("small");
    if (range) { input.type = "number"; input.min = range[0]; if (range[1] !== null) input.max = range[1];
      hint.textContent = range[1] === null ? ` \u2265 ${range[0]}` : ` ${range[0]}\u2013${range[1]}`; }
    input.onchange = () => { values[selected][name] = input.type === "checkbox" ? input.checked
      : (typeof PARAMS[selected][name] === "number" ? Number(input.value) : input.value);
      if (name === "family") { values.model.model_name = MODELS[input.value][0]; drawForm(); }
      check(); };
    label.append(name.replace(/_/g, " ") + " ", input, hint); form.appendChild(label);
  }
}
function request() {
  const valid = document.getElementById("valid").value;
  return {train: document.getElementById("train").value, valid: valid || null,
    model: values.model, transform: values.transform, train_params: values.train_params};
}
async function check() {  // the library's own message, in place, as soon as a value is wrong
  try { await api("/api/check", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(request())}); document.getElementById("error").textContent = "";
    document.getElementById("submit").disabled = false; }
  catch (e) { document.getElementById("error").textContent = e.message;
    document.getElementById("submit").disabled = true; }
}
async function loadFiles() {
  const listing = await api("/api/files");
  for (const id of ["train", "valid"]) for (const e of listing.entries) {
    const o = document.createElement("option"); o.value = e.path; o.textContent = e.path + " (" + e.kind + ")";
    document.getElementById(id).appendChild(o);
  }
}
let live = [], shown = {history: [], epochs: 1};  // live: the running epoch's loss, batch by batch
function drawChart(history, epochs) {
  shown = {history, epochs};
  const c = document.getElementById("chart").getContext("2d"); c.clearRect(0, 0, 640, 220);
  const total = Math.max(1, epochs || 1, history.length);
  const maxLoss = Math.max(...history.map(h => Math.max(h.train_loss, h.val_loss || 0)), ...live.map(p => p.loss), 1e-9);
  const x = epoch => 40 + epoch * 560 / total, y = (v, scale) => 200 - 180 * (v || 0) / scale;
  const line = (key, scale, color) => { c.strokeStyle = c.fillStyle = color; c.beginPath();
    history.forEach((h, i) => i ? c.lineTo(x(h.epoch), y(h[key], scale)) : c.moveTo(x(h.epoch), y(h[key], scale)));
    c.stroke(); history.forEach(h => c.fillRect(x(h.epoch) - 2, y(h[key], scale) - 2, 4, 4)); };
  line("train_loss", maxLoss, "#c55"); line("val_loss", maxLoss, "#e99"); line("val_top1", 1, "#2a6fb0");
  c.strokeStyle = "#999"; c.beginPath();
  live.forEach((p, i) => i ? c.lineTo(x(p.at), y(p.loss, maxLoss)) : c.moveTo(x(p.at), y(p.loss, maxLoss)));
  c.stroke();
  c.fillStyle = "#222"; c.fillText("loss (red: training, pink: validation, grey: this epoch, live), " +
    "validation accuracy (blue); x: epochs", 40, 14);
}
async function refresh() {  // rows are kept and updated in place, so a tick or click never lands on a removed row
  const runs = await api("/api/runs"), table = document.getElementById("runs");
  const header = table.querySelector("tr:not(.run)");
  for (const r of runs) {
    let tr = table.querySelector(`tr.run[data-id="${r.id}"]`);
    if (!tr) {
      tr = document.createElement("tr"); tr.className = "run"; tr.dataset.id = r.id;
      tr.innerHTML = `<td><a href="#">#${r.id}</a></td><td class="status"></td><td class="best"></td>` +
        `<td><input type="checkbox" aria-label="compare run ${r.id}"></td>`;
      tr.querySelector("a").onclick = e => { e.preventDefault(); follow(r.id); };
      tr.querySelector("input").onchange = e => { e.target.checked ? compared.add(r.id) : compared.delete(r.id);
        drawCompare(); };
      (header ? header.after(tr) : table.prepend(tr));  // newest first
    }
    tr.querySelector(".status").textContent = r.status;
    tr.querySelector(".best").textContent = r.best_accuracy == null ? "" : r.best_accuracy.toFixed(3);
  }
}
const compared = new Set(), COLOURS = ["#2a6fb0", "#c55", "#2a2", "#a6a", "#e0a000", "#555"];
async function drawCompare() {  // validation accuracy per epoch of the runs ticked, overlaid
  const c = document.getElementById("compare").getContext("2d"); c.clearRect(0, 0, 640, 160);
  const runs = await Promise.all([...compared].map(id => api("/api/runs/" + id)));
  const longest = Math.max(2, ...runs.map(r => r.history.length));
  runs.forEach((run, k) => { c.strokeStyle = c.fillStyle = COLOURS[k % COLOURS.length]; c.beginPath();
    run.history.forEach((h, i) => { const x = 40 + i * 560 / (longest - 1), y = 150 - 130 * (h.val_top1 || 0);
      i ? c.lineTo(x, y) : c.moveTo(x, y); c.fillRect(x - 2, y - 2, 4, 4); });
    c.stroke(); c.fillText("#" + run.id, 40 + 40 * k, 12); });
}
async function show(id) {
  const run = await api("/api/runs/" + id);
  document.getElementById("status").textContent = "run #" + id + ": " + run.status;
  document.getElementById("stop").disabled = !["queued", "running"].includes(run.status);
  document.getElementById("resume").disabled = !["stopped", "interrupted", "failed"].includes(run.status);
  document.getElementById("error").textContent = run.error ? run.error.name + ": " + run.error.message : "";
  drawPipeline(run);
  if (run.status !== "running") live = [];
  drawChart(run.history, run.request.train_params.epochs || (PARAMS.train_params || {}).epochs);
  drawResults(id, run);
  return run;
}
function cell(row, text, tag = "td") { const c = document.createElement(tag); c.textContent = text; row.appendChild(c); }
function drawResults(id, run) {
  const out = document.getElementById("metrics"); out.replaceChildren();
  if (!run.metrics) return;
  const m = run.metrics, p = document.createElement("p"); p.id = "accuracy";
  p.textContent = `accuracy ${m.accuracy.toFixed(3)}, macro F1 ${m.macro_avg.f1.toFixed(3)}, ${m.images} images` +
    (m.calibration ? `, calibration error ${m.calibration.ece.toFixed(3)}` : "");
  out.appendChild(p);
  const table = document.createElement("table"), head = document.createElement("tr");
  ["class", "precision", "recall", "F1", "images"].forEach(t => cell(head, t, "th")); table.appendChild(head);
  for (const [name, c] of Object.entries(m.per_class)) { const row = document.createElement("tr");
    cell(row, name); [c.precision, c.recall, c.f1].forEach(v => cell(row, v.toFixed(3))); cell(row, c.support);
    table.appendChild(row); }
  out.appendChild(table);
  for (const [file, alt] of [["model/training.png", "training history"], ["evaluation/confusion_matrix.png",
      "confusion matrix"], ["evaluation/most_confident_errors.png", "most confident errors"],
      ["evaluation/reliability.png", "reliability diagram"],
      ["evaluation/explanations/explanations.png", "Grad-CAM: where the model looked"]]) {
    const img = document.createElement("img"); img.alt = alt; img.style.maxWidth = "640px";
    img.src = `/api/runs/${id}/files/${file}?token=${token}`; out.appendChild(img); }
  api(`/api/runs/${id}/errors`).then(errors => {
    const gallery = document.createElement("div"); gallery.id = "errors";
    const title = document.createElement("h3"); title.textContent = "Most confident errors"; gallery.appendChild(title);
    if (!errors.length) gallery.append("none");
    for (const e of errors) { const fig = document.createElement("figure"), cap = document.createElement("figcaption");
      fig.className = "error"; cap.textContent = `${e.true} \u2192 ${e.predicted} (${e.probability.toFixed(2)})`;
      if (e.path) { const img = document.createElement("img"); img.width = 96; img.className = "thumb";
        img.src = `/api/runs/${id}/files/${e.path}?token=${token}`; img.alt = e.path; fig.appendChild(img); }
      fig.appendChild(cap); gallery.appendChild(fig); }
    out.appendChild(gallery); }).catch(() => {});
  const links = document.createElement("p");
  for (const [what, text] of [["model", "model directory (zip)"], ["scores", "scores CSV"], ["onnx", "ONNX"]]) {
    const a = document.createElement("a"); a.href = `/api/runs/${id}/download/${what}?token=${token}`;
    a.textContent = text; links.append(a, " "); }
  out.appendChild(links);
}
function follow(id) {
  current = id; live = []; if (source) source.close(); show(id);
  source = new EventSource("/api/runs/" + id + "/events?token=" + token);
  source.onmessage = m => { const e = JSON.parse(m.data);
    if (e.kind === "progress") { live.push({at: e.epoch - 1 + e.batch / e.batches, loss: e.loss});
      drawChart(shown.history, e.epochs); const left = ((e.epochs - e.epoch) * e.batches + e.batches - e.batch) *
        e.seconds / e.batch;
      document.getElementById("progress").textContent = `epoch ${e.epoch}/${e.epochs}, batch ${e.batch}/` +
        `${e.batches}, loss ${e.loss.toFixed(4)}, ${e.images_per_second.toFixed(0)} img/s, ETA ` +
        `${Math.floor(left / 60)}:${String(Math.round(left % 60)).padStart(2, "0")}`; }
    if (e.kind === "epoch") { live = live.filter(p => p.at >= e.epoch); show(id); } };
  source.addEventListener("end", () => { source.close(); show(id); refresh(); });
}
document.getElementById("submit").onclick = async () => {
  document.getElementById("error").textContent = "";
  try {
    const {id} = await api("/api/runs", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(request())});
    follow(id); refresh();
  } catch (e) { document.getElementById("error").textContent = e.message; }
};
const drop = document.getElementById("drop");
drop.ondragover = e => e.preventDefault();
drop.ondrop = e => { e.preventDefault(); tryImage(e.dataTransfer.files[0]); };
document.getElementById("try").onchange = e => tryImage(e.target.files[0]);
async function tryImage(file) {
  if (!file || current === null) return;
  try {
    const answer = await api("/api/runs/" + current + "/predict", {method: "POST", body: file});
    const out = document.getElementById("answer"), label = document.createElement("p");
    label.className = "label"; label.textContent = answer.label; out.replaceChildren(label);
    for (const t of answer.top) { const line = document.createElement("div");
      line.textContent = t.class + " " + (100 * t.probability).toFixed(1) + "%"; out.appendChild(line); }
  } catch (err) { document.getElementById("answer").textContent = err.message; }
}
document.getElementById("train").onchange = document.getElementById("valid").onchange = () => check();
document.getElementById("stop").onclick = () => api("/api/runs/" + current + "/stop", {method: "POST"});
document.getElementById("resume").onclick = () => api("/api/runs/" + current + "/resume", {method: "POST"})
  .then(() => follow(current));
api("/api/health").then(h => document.getElementById("root").textContent = "root: " + h.root);
let RANGES = {};
let MODELS = {}, CHOICES = {};
api("/api/parameters").then(p => { RANGES = p.ranges; MODELS = p.models; CHOICES = p.choices;
  delete p.ranges; delete p.models; delete p.choices; delete p.parameters; PARAMS = p;
  values = JSON.parse(JSON.stringify(p)); drawPipeline(); drawForm(); });
loadFiles();
refresh().then(() => api("/api/runs")).then(runs => {  // a reloaded page re-attaches to the active run
  const active = runs.filter(r => ["queued", "running"].includes(r.status)).pop() || runs.pop();
  if (active) follow(active.id); });
</script></body></html>
"""
