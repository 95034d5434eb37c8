// Small DOM helpers: build elements without innerHTML, so no text from the server is ever parsed as HTML.

/** An element: el("td", {class: "num", dataset: {node: "train"}}, "text", child, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") for (const [k, v] of Object.entries(value)) node.style.setProperty(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/** The element of id `id` (they are all in index.html). */
export const byId = (id) => document.getElementById(id);

/** Replace an element's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A table: headers (strings) and rows (arrays of cells: text, numbers or nodes). */
export function table(headers, rows, attrs = {}) {
  const head = headers ? el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))) : null;
  const body = el(
    "tbody",
    {},
    rows.map((row) => el("tr", {}, row.map((cell) => el("td", { class: typeof cell === "number" ? "num" : null }, cell)))),
  );
  return el("table", attrs, head, body);
}

/** A two-column table of [key, value] pairs (a model's card, a transformation's steps). */
export function pairs(entries, attrs = {}) {
  return el(
    "table",
    { class: "pairs", ...attrs },
    el("tbody", {}, entries.map(([key, value]) => el("tr", {}, el("th", { scope: "row" }, key), el("td", {}, value)))),
  );
}

/** Tabs: [{id, label, render()}]; the first is shown; render() runs when a tab is first opened. */
export function tabs(name, items) {
  const list = el("div", { class: "tabs", role: "tablist", "aria-label": name });
  const panels = el("div", { class: "tab-panels" });
  const buttons = items.map((item, i) => {
    const panel = el("div", { class: "tab-panel", role: "tabpanel", id: `${name}-${item.id}`, hidden: i !== 0 });
    panels.append(panel);
    const button = el("button", {
      type: "button",
      role: "tab",
      class: "tab",
      id: `${name}-${item.id}-tab`,
      "aria-controls": panel.id,
      "aria-selected": i === 0 ? "true" : "false",
      dataset: { tab: item.id },
    }, item.label);
    panel.setAttribute("aria-labelledby", button.id);
    let rendered = false;
    const open = () => {
      buttons.forEach((b) => b.setAttribute("aria-selected", String(b === button)));
      [...panels.children].forEach((p) => (p.hidden = p !== panel));
      if (!rendered) {
        rendered = true;
        fill(panel, item.render());
      }
    };
    button.addEventListener("click", open);
    return button;
  });
  list.append(...buttons);
  buttons[0]?.click();
  list.addEventListener("keydown", (event) => {
    const at = buttons.indexOf(document.activeElement);
    if (at < 0 || !["ArrowLeft", "ArrowRight"].includes(event.key)) return;
    const next = buttons[(at + (event.key === "ArrowRight" ? 1 : buttons.length - 1)) % buttons.length];
    next.focus();
    next.click();
  });
  return el("div", { class: "tabbed" }, list, panels);
}
