// Hybrid search on the page: a search-mode switch, the understood query as chips, and
// composed "like this, but ..." queries from a product's detail view.
// app.js calls window.fcHybrid.extend(kind) for extra request fields and
// window.fcHybrid.show(data) after rendering; everything else lives here.
"use strict";

(() => {
  const MODES = [["", "Best (hybrid)"], ["hybrid", "Hybrid"], ["vector", "Image similarity"], ["keyword", "Keywords"]];
  const ui = { mode: "", refine: "" };

  function make(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function modeSwitch() {
    const label = make("label", { class: "inline", for: "search-mode" }, "Mode ");
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

  function chips(understood) {
    const box = document.getElementById("understood");
    if (!box) return;
    box.replaceChildren();
    const entries = Object.entries(understood || {});
    box.hidden = entries.length === 0;
    if (!entries.length) return;
    box.append(make("span", { class: "muted small" }, "Understood: "));
    for (const [column, value] of entries) {
      const values = Array.isArray(value) ? value : [value];
      const chip = make("button", {
        type: "button", class: "chip", title: "Use as a filter (only " + values.join(" or ") + ")",
      }, columnLabel(column) + ": " + values.join(" / "));
      chip.addEventListener("click", () => {
        state.filters[column] = values.length === 1 ? values[0] : values;
        if (typeof buildFilters === "function" && state.facets) buildFilters(state.facets);
        run();
      });
      box.append(chip);
    }
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
    const status = document.getElementById("status");
    if (status) status.before(make("div", { id: "understood", class: "understood", hidden: "" }));
    const actions = document.getElementById("detail-like");
    if (actions && actions.parentElement) actions.parentElement.append(refineForm());
  });
})();
