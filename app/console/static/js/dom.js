// Building the console's DOM from data without HTML: every screen's one way to make elements.

import { ApiError, newKey } from "./api.js";

let uid = 0;

/**
 * An element. `text` sets its text (never HTML), `class` its class, `data` its dataset (an
 * object), `on<event>` a listener; a name the element has as a property (`value`, `checked`,
 * `htmlFor`, `hidden`) is set as one; anything else is an attribute (`true` as an empty one).
 * Null, undefined and false values and children are left out; children may be nested arrays.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (!key.includes("-") && key in node) node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A labelled control, for a `.row` form. */
export function field(label, control) {
  if (!control.id) control.id = `field-${++uid}`;
  return h("div", { class: "field" }, h("label", { for: control.id, text: label }), control);
}

export function select(name, options, chosen) {
  return h("select", { name }, options.map(([value, label]) =>
    h("option", { value, selected: value === chosen, text: label })));
}

/** A table in a scrolling region: named, and focusable so that a keyboard can scroll it. */
export function table(headers, rows, { label } = {}) {
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((head) =>
        typeof head === "string" ? h("th", { scope: "col", text: head })
          : h("th", { scope: "col", class: head.class, text: head.text })))),
      h("tbody", {}, rows)));
}

/** What a person reads of a failure. */
export function said(error) {
  return error instanceof ApiError ? error.said : String(error?.message ?? error);
}

/** A form that writes once per attempt: the Idempotency-Key is kept while no answer came
 * back (a retry is then the same request) and renewed after any answer. `action(data, key)`
 * writes; a failure is shown under the form. */
export function writeForm(props, children, action) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", props, children, error);
  let key = newKey();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await action(new FormData(form), key);
      key = newKey();
    } catch (failure) {
      if (failure instanceof ApiError && failure.status < 500) key = newKey();
      error.textContent = said(failure);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}
