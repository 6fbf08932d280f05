// Hybrid search on the page: a search-mode switch, the understood query as chips, and
// composed "like this, but ..." queries from a product's detail view.
// app.js calls window.fcHybrid.extend(kind) for extra request fields and
// window.fcHybrid.show(data) after rendering; everything else lives here.
"use strict";

(() => {
  // Short labels: the switch shares the header's tool row with "Show" on a phone.
  const MODES = [["", "Best match"], ["vector", "By look"], ["keyword", "By words"], ["hybrid", "Hybrid"]];
  const ui = { mode: "", refine: "" };

  function make(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function modeSwitch() {
    const label = make("label", { class: "inline", for: "search-mode", title: "Search mode" });
    const select = make("select", { id: "search-mode", "aria-label": "Search mode" });
    for (const [value, text] of MODES) select.append(make("option", { value }, text));
    select.addEventListener("change", () => {
      ui.mode = select.value;
      if (typeof run === "function") run();
    });
    label.append(select);
    return label;
  }

  function refineForm() {
    const form = make("form", { id: "refine-form", class: "classify" });
    const input = make("input", {
      id: "refine-text", type: "text", placeholder: "like this, but\u2026 (e.g. red)",
      "aria-label": "Refine: like this product, but",
    });
    const button = make("button", { type: "submit", class: "secondary" }, "Like this, but\u2026");
    form.append(input, button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const hit = typeof state !== "undefined" ? state.detail : null;
      if (!hit) return;
      ui.refine = input.value.trim();
      input.value = "";
      $("detail").close();
      searchLike(hit.id, hit.title + (ui.refine ? ", but " + ui.refine : ""));
    });
    return form;
  }

  // The chips go at the end of the status line that app.js has just written, so that they
  // take no extra row above the results (a phone shows the first results on screen one).
  function chips(understood) {
    const status = document.getElementById("status");
    if (!status) return;
    const old = document.getElementById("understood");
    if (old) old.remove();
    const entries = Object.entries(understood || {});
    if (!entries.length) return;
    const box = make("span", { id: "understood", class: "understood" });
    box.append(make("span", { class: "muted" }, " \u00b7 understood: "));
    for (const [column, value] of entries) {
      const values = Array.isArray(value) ? value : [value];
      const chip = make("button", {
        type: "button", class: "chip link", title: columnLabel(column) + ": use as a filter",
      }, values.join("/"));
      chip.addEventListener("click", () => {
        state.filters[column] = values.length === 1 ? values[0] : values;
        run();
      });
      box.append(chip, " ");
    }
    status.append(box);
  }

  window.fcHybrid = {
    extend(kind) {
      const extra = {};
      if (ui.mode && kind === "text") extra.mode = ui.mode;
      if (kind === "like" && ui.refine) {
        extra.text = ui.refine;
        if (ui.mode) extra.mode = ui.mode;
      }
      return extra;
    },
    show(data) {
      chips(data && data.understood);
      if (data && data.kind !== "like") ui.refine = "";
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    const tools = document.querySelector(".tools");
    if (tools) tools.append(modeSwitch());
    const actions = document.getElementById("detail-like");
    if (actions && actions.parentElement) actions.parentElement.append(refineForm());
  });
})();
