// Placeholder: this screen is being built (issue 22).
export async function render(el) {
  el.append(Object.assign(document.createElement("h2"), { textContent: "exchange" }));
}
