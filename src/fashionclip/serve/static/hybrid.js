// Hybrid search on the page: a search-mode switch, the understood query as removable chips,
// composed "like this, but ..." queries from a product's detail view, and words added to an
// image search ("but in red").
// app.js calls window.fcHybrid.extend(kind) for extra request fields and
// window.fcHybrid.show(data) after rendering; everything else lives here.
//
// Removing a chip means "do not use this understood term": the search runs again with
// ignore_understood=[column] (its soft boost is dropped); it is never turned into a filter.
"use strict";

(() => {
  // Short labels: the switch shares the header's tool row with "Show" on a phone.
  const MODES = [["", "Best match"], ["vector", "By look"], ["keyword", "By words"], ["hybrid", "Hybrid"]];
  // ignored: column -> values of the chips removed for the current query (`ignoredFor`).
  const ui = { mode: "", refine: "", words: "", wordsFor: null, ignored: new Map(), ignoredFor: null };

  function make(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function rerun() {
    if (typeof run === "function") run();
  }

  function modeSwitch() {
    const label = make("label", { class: "inline", for: "search-mode", title: "Search mode" });
    const select = make("select", { id: "search-mode", "aria-label": "Search mode" });
    for (const [value, text] of MODES) select.append(make("option", { value }, text));
    select.addEventListener("change", () => {
      ui.mode = select.value;
      rerun();
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

  // Words added to an image search: "like this photo, but in red" (a composed query).
  function wordsForm() {
    const form = make("form", { id: "image-words-form", class: "classify" });
    form.hidden = true;
    const input = make("input", {
      id: "image-words", type: "text", maxlength: "512", placeholder: "but\u2026 (e.g. in red)",
      "aria-label": "Words to add to the image search",
    });
    const button = make("button", { type: "submit", class: "secondary" }, "Add words");
    form.append(input, button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      ui.words = input.value.trim();
      ui.wordsFor = state.fileUrl;
      rerun();
    });
    return form;
  }

  // The query the chips belong to: removed chips are forgotten when it changes.
  function queryKey(kind) {
    if (kind === "text") return "t:" + state.text;
    if (kind === "like") return "l:" + state.like.id + "|" + ui.refine;
    return "i:" + state.fileUrl + "|" + ui.words;
  }

  // aside: understood, but set aside by the search (no product carries it with the rest of
  // the query, e.g. "winter" in "winter coat" where no coat is of the Winter season): shown
  // apart, so that nobody reads the results as matching it.
  function chip(column, values, removed, aside) {
    const name = values.join("/");
    const what = (typeof columnLabel === "function" ? columnLabel(column) : column) + " " + name;
    const title = removed
      ? "Use " + what + " again"
      : aside
        ? "No product is " + name + " together with the rest of the query: " + what +
          " was searched as a word only. Click to leave it out."
        : "Search without using " + what + " (not a filter)";
    const node = make("button", {
      type: "button", class: "chip link" + (removed ? " removed" : "") + (aside ? " aside" : ""),
      "data-column": column, title,
      "aria-label": (removed ? "Use again: " : "Remove: ") + what + (aside ? " (words only)" : ""),
    }, removed ? name : name + (aside ? " \u00b7 words only" : "") + " \u00d7");
    node.addEventListener("click", () => {
      if (removed) ui.ignored.delete(column);
      else ui.ignored.set(column, values);
      rerun();
    });
    return node;
  }

  // The chips go at the end of the status line that app.js has just written, so that they
  // take no extra row above the results (a phone shows the first results on screen one).
  function chips(understood, setAside) {
    const status = document.getElementById("status");
    if (!status) return;
    const old = document.getElementById("understood");
    if (old) old.remove();
    const entries = Object.entries(understood || {});
    if (!entries.length && !ui.ignored.size) return;
    const box = make("span", { id: "understood", class: "understood" });
    box.append(make("span", { class: "muted" }, " \u00b7 understood: "));
    const aside = new Set(setAside || []);
    for (const [column, value] of entries) {
      const values = Array.isArray(value) ? value : [value];
      box.append(chip(column, values, false, aside.has(column)), " ");
    }
    for (const [column, values] of ui.ignored) box.append(chip(column, values, true), " ");
    status.append(box);
  }

  function showWords(data) {
    const form = document.getElementById("image-words-form");
    if (!form) return;
    const image = typeof state !== "undefined" && state.mode === "image";
    form.hidden = !image;
    if (!image) return;
    const label = document.getElementById("query-label");
    const text = data && data.query ? data.query.text : null;
    const old = document.getElementById("image-words-shown");
    if (old) old.remove();
    if (label && text) {
      label.append(make("span", { id: "image-words-shown" }, ", but \u201c" + text + "\u201d"));
    }
  }

  window.fcHybrid = {
    extend(kind) {
      if (kind === "image" && ui.wordsFor !== state.fileUrl) {
        ui.words = ""; // a new image: its own words
        const input = document.getElementById("image-words");
        if (input) input.value = "";
      }
      const key = queryKey(kind);
      if (key !== ui.ignoredFor) {
        ui.ignored.clear();
        ui.ignoredFor = key;
      }
      const extra = {};
      const text = kind === "text" ? state.text : kind === "like" ? ui.refine : ui.words;
      if (kind !== "text" && text) extra.text = text;
      if (ui.mode && text) extra.mode = ui.mode;
      if (text && ui.ignored.size) extra.ignore_understood = [...ui.ignored.keys()];
      return extra;
    },
    show(data) {
      chips(data && data.understood, data && data.set_aside);
      showWords(data);
      if (data && data.kind !== "like") ui.refine = "";
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    const tools = document.querySelector(".tools");
    if (tools) tools.append(modeSwitch());
    const actions = document.getElementById("detail-like");
    if (actions && actions.parentElement) actions.parentElement.append(refineForm());
    const banner = document.querySelector("#query-banner .banner-text");
    if (banner) banner.append(wordsForm());
  });
})();
