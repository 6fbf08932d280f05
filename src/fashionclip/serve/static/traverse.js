// "Like this, but darker": comparative walks (POST /api/traverse, docs/recommend.md) on the
// product detail panel. app.js calls window.traverseShow(hit) when it opens a product; this
// file owns the #traverse section of the panel: ready comparatives, a free "from ... to ..."
// form, and the answer as a strip of steps (the seed first, then step 1, 2, ...).
"use strict";

(() => {
  const COMPARATIVES = [
    ["darker", "light", "dark"],
    ["lighter", "dark", "light"],
    ["more formal", "casual", "formal"],
    ["more casual", "formal", "casual"],
    ["longer", "short", "long"],
    ["shorter", "long", "short"],
  ];
  let current = null; // the product the panel shows
  let seq = 0; // late answers for an older product or request are dropped

  function node(tag, attrs, ...children) {
    const out = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") out.className = value;
      else if (key === "text") out.textContent = value;
      else out[key] = value;
    }
    for (const child of children) if (child) out.append(child);
    return out;
  }

  function thumb(hit, label) {
    const img = node("img", { src: hit.image_url || "/api/thumbnails/" + encodeURIComponent(hit.id), alt: "", loading: "lazy" });
    img.addEventListener("error", () => img.classList.add("missing"));
    const button = node("button", { type: "button", class: "walk-item", title: hit.title }, img, node("span", { text: label || hit.title }));
    button.addEventListener("click", () => {
      if (typeof openDetail === "function") openDetail(hit); // app.js
    });
    return button;
  }

  function render(box, data) {
    const strip = node("div", { class: "walk-strip" });
    const seed = { ...current, image_url: current.image_url };
    strip.append(node("div", { class: "walk-step seed" }, node("div", { class: "walk-label", text: "this" }), thumb(seed, current.title)));
    data.steps.forEach((step, i) => {
      const column = node("div", { class: "walk-step" }, node("div", { class: "walk-label", text: "step " + (i + 1) }));
      for (const hit of step) column.append(thumb(hit));
      strip.append(column);
    });
    const note = data.steps.length
      ? "From \u201c" + data.from + "\u201d to \u201c" + data.to + "\u201d" + (data.keep ? ", same " + data.keep : "") + " \u00b7 " + Math.round(data.took_ms) + " ms"
      : "Nothing in the catalog lies further towards \u201c" + data.to + "\u201d near this product.";
    box.replaceChildren(node("p", { class: "walk-note small muted", text: note }), strip);
    strip.scrollIntoView({ block: "nearest" });
  }

  async function walk(start, end) {
    if (!current) return;
    const mine = ++seq;
    const box = document.getElementById("traverse-result");
    box.replaceChildren(node("p", { class: "small muted", text: "Walking\u2026" }));
    let response, data;
    try {
      response = await fetch("/api/traverse", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ id: current.id, from: start, to: end }),
      });
      data = await response.json();
    } catch (err) {
      data = { error: "the server cannot be reached (" + err.message + ")" };
    }
    if (mine !== seq) return;
    if (!response || !response.ok) {
      box.replaceChildren(node("p", { class: "error", text: (data && data.error) || "the walk failed" }));
      return;
    }
    render(box, data);
  }

  function build(section) {
    const buttons = node("div", { class: "walk-buttons" });
    for (const [label, start, end] of COMPARATIVES) {
      const button = node("button", { type: "button", class: "secondary", text: label });
      button.addEventListener("click", () => walk(start, end));
      buttons.append(button);
    }
    const from = node("input", { type: "text", id: "walk-from", placeholder: "from: casual", maxLength: 200 });
    const to = node("input", { type: "text", id: "walk-to", placeholder: "to: party", maxLength: 200 });
    from.setAttribute("aria-label", "From");
    to.setAttribute("aria-label", "To");
    const form = node("form", { class: "walk-form" }, from, to, node("button", { type: "submit", text: "Walk" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      walk(from.value, to.value);
    });
    section.replaceChildren(node("h3", { text: "Like this, but\u2026" }), buttons, form, node("div", { id: "traverse-result" }));
  }

  window.traverseShow = (hit) => {
    current = hit;
    seq++;
    const section = document.getElementById("traverse");
    if (!section) return;
    if (!section.firstChild) build(section);
    document.getElementById("traverse-result").replaceChildren();
  };
})();
