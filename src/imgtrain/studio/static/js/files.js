// The file browser: a modal over GET /api/files?path=...; folders open, the others are chosen; nothing is
// preselected; choosing sets the parameter it was opened for (a Convert box's source).
import { api, url } from "./api.js";
import { byId, el, fill } from "./dom.js";
import { number } from "./labels.js";
import { emit, state } from "./state.js";

let target = null; // {node, field} being chosen for
let current = ".";

export function initFiles() {
  const dialog = byId("files-dialog");
  byId("files-close").addEventListener("click", () => dialog.close());
  byId("files-up").addEventListener("click", () => open(parent(current)));
  dialog.addEventListener("close", () => {
    target = null;
  });
}

/** Open the browser for a parameter, starting from its current value's folder (or the root). */
export function openBrowser(forField) {
  target = forField;
  const node = state.nodes.get(forField.node);
  const now = node?.params[forField.field];
  byId("files-for").textContent = `for ${forField.node} · ${forField.field}${now ? ` (now: ${now})` : ""}`;
  byId("files-dialog").showModal();
  open(now ? parent(String(now)) : ".");
}

/** The first Convert box's source (the toolbar's "Choose images…"). */
export function chooseImages() {
  const convert = [...state.nodes.values()].find((n) => n.module === "convert");
  if (!convert) return false;
  openBrowser({ node: convert.id, field: "source" });
  return true;
}

function parent(path) {
  const parts = String(path).split("/").filter((p) => p && p !== ".");
  parts.pop();
  return parts.length ? parts.join("/") : ".";
}

async function open(path) {
  current = path;
  const list = byId("files-list");
  const message = byId("files-message");
  fill(list); // no rows of the folder left behind under the new breadcrumb
  message.textContent = "Reading…";
  message.dataset.kind = "info";
  byId("files-up").disabled = path === ".";
  breadcrumb(path);
  try {
    const answer = await api(url("/api/files", { path }));
    if (current !== path) return;
    current = answer.path ?? path;
    breadcrumb(current);
    byId("files-up").disabled = current === ".";
    fill(list, (answer.entries || []).map(entryRow));
    message.dataset.kind = "info";
    message.textContent = answer.entries?.length ? "" : answer.hint || "Nothing here that the studio can read.";
    if (answer.entries?.length && answer.hint) message.textContent = answer.hint;
  } catch (error) {
    fill(list);
    message.dataset.kind = "error";
    message.textContent = error.message;
  }
}

function breadcrumb(path) {
  const parts = String(path).split("/").filter((p) => p && p !== ".");
  const crumbs = [el("li", {}, el("button", { type: "button", class: "link", onclick: () => open(".") }, "root"))];
  parts.forEach((part, i) => {
    const to = parts.slice(0, i + 1).join("/");
    crumbs.push(el("li", {}, i === parts.length - 1
      ? el("span", { "aria-current": "location" }, part)
      : el("button", { type: "button", class: "link", onclick: () => open(to) }, part)));
  });
  fill(byId("files-crumbs"), crumbs);
}

function counts(entry) {
  const parts = [];
  if (typeof entry.images === "number") parts.push(`${number(entry.images)} image${entry.images === 1 ? "" : "s"}`);
  const classes = entry.classes;
  const n = Array.isArray(classes) ? classes.length : classes && typeof classes === "object" ? Object.keys(classes).length : classes;
  if (typeof n === "number") parts.push(`${n} class${n === 1 ? "" : "es"}`);
  return parts.join(", ");
}

function entryRow(entry) {
  const folder = entry.kind === "folder";
  const action = folder
    ? el("button", { type: "button", class: "open", onclick: () => open(entry.path), "aria-label": `Open ${entry.name}` }, "Open")
    : el("button", { type: "button", class: "choose", onclick: () => choose(entry), "aria-label": `Choose ${entry.name}` }, "Choose");
  const name = folder
    ? el("button", { type: "button", class: "link entry-name", onclick: () => open(entry.path) }, `${entry.name}/`)
    : el("span", { class: "entry-name" }, entry.name);
  return el("li", { class: "entry", dataset: { path: entry.path, kind: entry.kind } },
    name,
    el("span", { class: "badge", dataset: { kind: entry.kind } }, entry.kind),
    el("span", { class: "counts" }, counts(entry)),
    action);
}

function choose(entry) {
  if (!target) return;
  const node = state.nodes.get(target.node);
  if (node) {
    node.params[target.field] = entry.path;
    emit("params", { node: node.id, field: target.field, from: "browser" });
  }
  byId("files-dialog").close();
}
