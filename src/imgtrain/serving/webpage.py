"""The page served at GET /: drop or pick images, see the top classes as bars. No external assets."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgtrain classifier</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  #drop { border: 2px dashed #888; border-radius: 8px; padding: 2rem; text-align: center; cursor: pointer; }
  #drop.over { background: #eef5ff; border-color: #36c; }
  .result { display: flex; gap: 1rem; margin: 1rem 0; align-items: flex-start; }
  .result img { width: 96px; height: 96px; object-fit: contain; background: #f4f4f4; border-radius: 4px; }
  .bars { flex: 1; }
  .row { display: flex; align-items: center; gap: .5rem; margin: .2rem 0; font-size: .9rem; }
  .row .name { width: 9rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .row .bar { flex: 1; background: #eee; height: .9rem; border-radius: 3px; }
  .row .fill { background: #36c; height: 100%; border-radius: 3px; }
  .label { font-weight: 600; }
  .error { color: #b00; }
</style>
</head>
<body>
<h1>imgtrain classifier</h1>
<p id="model">Loading model facts...</p>
<div id="drop" tabindex="0">Drop images here, or click to pick them
  <input id="pick" type="file" accept="image/*" multiple hidden>
</div>
<div id="results"></div>
<script>
const drop = document.getElementById("drop"), pick = document.getElementById("pick");
const results = document.getElementById("results");
fetch("health").then(r => r.json()).then(h => {
  document.getElementById("model").textContent =
    `${h.architecture}: ${h.classes.length} classes (${h.classes.join(", ")}) on ${h.device}`;
});
drop.addEventListener("click", () => pick.click());
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => {
  e.preventDefault(); drop.classList.remove("over"); classify(Array.from(e.dataTransfer.files));
});
// a copy: emptying the input (to pick the same files again) empties its live FileList, which the loop
// below still walks after its first await
pick.addEventListener("change", () => { const files = Array.from(pick.files); pick.value = ""; classify(files); });

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function classify(files) {
  for (const file of files) {
    const box = el("div", "result");
    const img = el("img"); img.src = URL.createObjectURL(file); img.alt = file.name;
    const bars = el("div", "bars");
    bars.appendChild(el("div", "", file.name + ": classifying..."));
    box.append(img, bars);
    results.prepend(box);
    const form = new FormData(); form.append("file", file);
    try {
      const response = await fetch("predict", { method: "POST", body: form });
      const answer = await response.json();
      bars.textContent = "";
      if (!response.ok) { bars.appendChild(el("div", "error", answer.error || response.statusText)); continue; }
      const p = answer.predictions[0];
      const label = Array.isArray(p.label) ? (p.label.length ? p.label.join(", ") : "(none of the classes)") : p.label;
      bars.appendChild(el("div", "label", label));
      for (const t of p.top) {
        const row = el("div", "row");
        const fill = el("div", "fill"); fill.style.width = (100 * t.probability).toFixed(1) + "%";
        const bar = el("div", "bar"); bar.appendChild(fill);
        row.append(el("span", "name", t.label), bar, el("span", "pct", (100 * t.probability).toFixed(1) + "%"));
        bars.appendChild(row);
      }
    } catch (err) {
      bars.textContent = ""; bars.appendChild(el("div", "error", String(err)));
    }
  }
}
</script>
</body>
</html>
"""
