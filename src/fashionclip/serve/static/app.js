// fashionclip search page: plain JavaScript, no build step, talks to the JSON API of the same
// server (see /docs). State: the current query (text, image or "like" a product), filters, k.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  mode: null, // "text" | "image" | "like"
  text: "",
  file: null,
  fileUrl: null,
  like: null, // {id, title}
  filters: {}, // column -> value (string)
  seq: 0, // increases per request; late answers of older requests are dropped
};

// -- API --------------------------------------------------------------------------------------

async function api(url, options) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("the server cannot be reached (" + err.message + ")");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const message = data && data.error ? data.error : response.status + " " + response.statusText;
    throw new Error(message);
  }
  return { data, ms: performance.now() - started };
}

function postJSON(url, body) {
  return api(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

// -- helpers ----------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function ms(value) {
  return value < 10 ? value.toFixed(1) + " ms" : Math.round(value) + " ms";
}

// Local model folders are long absolute paths: show their last part (the full name as a tooltip).
function shortModel(name) {
  if (/^(\/|\.{1,2}\/|~)/.test(name)) return name.replace(/\/+$/, "").split("/").pop();
  return name;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function thumbUrl(id) {
  return "/api/thumbnails/" + encodeURIComponent(id);
}

function activeFilters() {
  const filters = {};
  for (const [column, value] of Object.entries(state.filters)) {
    if (value !== "") filters[column] = value;
  }
  return filters;
}

function wantCompare() {
  return Boolean(state.info && state.info.compare && $("compare").checked);
}

// -- searching --------------------------------------------------------------------------------

async function run() {
  if (!state.mode) return;
  const seq = ++state.seq;
  const k = parseInt($("k").value, 10);
  const filters = activeFilters();
  const compare = wantCompare();
  showError("");
  $("status").textContent = "Searching\u2026";
  document.body.classList.add("busy");
  try {
    let result;
    if (state.mode === "text") {
      result = await postJSON("/api/search/text", { query: state.text, k, filters, compare });
    } else if (state.mode === "like") {
      result = await postJSON("/api/search/like", { id: state.like.id, k, filters, compare });
    } else {
      const form = new FormData();
      form.append("image", state.file, state.file.name || "upload");
      form.append("k", String(k));
      form.append("filters", JSON.stringify(filters));
      form.append("compare", compare ? "true" : "false");
      result = await api("/api/search/image", { method: "POST", body: form });
    }
    if (seq !== state.seq) return;
    render(result.data, result.ms);
  } catch (err) {
    if (seq !== state.seq) return;
    $("status").textContent = "";
    showError(err.message);
  } finally {
    if (seq === state.seq) document.body.classList.remove("busy");
  }
}

function render(data, roundTrip) {
  const container = $("results");
  container.replaceChildren();
  const lists = [data.results];
  if (data.compare) lists.push(data.compare);
  container.classList.toggle("compare", lists.length > 1);
  for (const list of lists) container.append(renderList(list, lists.length > 1));
  const n = data.results.results.length;
  const t = data.results.timing;
  const parts = [
    n + (n === 1 ? " result" : " results"),
    ms(data.took_ms) + " on the server",
  ];
  if (data.kind !== "like") parts.push("encode " + ms(t.encode_ms) + ", search " + ms(t.search_ms));
  else parts.push("search " + ms(t.search_ms));
  parts.push(ms(roundTrip) + " round trip");
  $("status").textContent = parts.join(" \u00b7 ");
  $("status").dataset.latency = String(data.took_ms);
}

function renderList(list, withHeading) {
  const section = el("section", { class: "side", "data-side": list.side });
  if (withHeading) {
    const label = list.side === "compare" ? "Compare model" : "Catalog model";
    const t = list.timing;
    section.append(
      el(
        "h2",
        {},
        el("span", { class: "side-label", text: label }),
        el(
          "span",
          { class: "model-line" },
          el("span", { class: "model-name", text: shortModel(list.model), title: list.model }),
          el("span", { class: "muted small", text: " \u00b7 " + ms(t.encode_ms + t.search_ms) }),
        ),
      ),
    );
  }
  if (list.error) {
    section.append(el("p", { class: "muted", text: list.error }));
    return section;
  }
  if (!list.results.length) {
    section.append(el("p", { class: "muted", text: "No products match. Try other filters." }));
    return section;
  }
  const grid = el("div", { class: "grid" });
  for (const hit of list.results) grid.append(card(hit));
  section.append(grid);
  return section;
}

function card(hit) {
  const keys = (state.info && state.info.key_columns) || [];
  const meta = keys
    .map((column) => hit.metadata[column])
    .filter((value) => value !== null && value !== undefined && value !== "")
    .join(" \u00b7 ");
  const image = el("img", {
    src: hit.image_url || thumbUrl(hit.id),
    alt: hit.title,
    loading: "lazy",
    decoding: "async",
  });
  const button = el(
    "button",
    {
      type: "button",
      class: "card",
      title: "Show products similar to " + hit.title,
      "data-id": hit.id,
    },
    el("span", { class: "thumb" }, image),
    el("span", { class: "title", text: hit.title }),
    meta ? el("span", { class: "meta", text: meta }) : null,
    el("span", { class: "score", text: "score " + hit.score.toFixed(3) }),
  );
  button.addEventListener("click", () => searchLike(hit.id, hit.title));
  return button;
}

// -- modes ------------------------------------------------------------------------------------

function setBanner(label, imageUrl, withClassify) {
  $("query-banner").hidden = false;
  $("query-label").replaceChildren(...label);
  const img = $("query-img");
  img.hidden = !imageUrl;
  if (imageUrl) img.src = imageUrl;
  $("classify-form").hidden = !withClassify;
  $("classify-result").textContent = "";
}

function clearBanner() {
  $("query-banner").hidden = true;
  $("query-img").removeAttribute("src");
}

function searchText(text) {
  state.mode = "text";
  state.text = text;
  clearBanner();
  run();
}

function searchLike(id, title) {
  state.mode = "like";
  state.like = { id, title };
  setBanner(
    [el("span", { class: "muted", text: "Similar to " }), el("strong", { text: title })],
    thumbUrl(id),
    false,
  );
  window.scrollTo({ top: 0, behavior: "smooth" });
  run();
}

function searchImage(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError("That file is not an image (" + file.type + ").");
    return;
  }
  const limit = state.info ? state.info.limits.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showError("The image is " + file.size + " bytes; the limit is " + limit + " bytes.");
    return;
  }
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.mode = "image";
  state.file = file;
  state.fileUrl = URL.createObjectURL(file);
  setBanner(
    [el("span", { class: "muted", text: "Searching by image " }), el("strong", { text: file.name || "" })],
    state.fileUrl,
    true,
  );
  run();
}

async function classify(event) {
  event.preventDefault();
  if (state.mode !== "image" || !state.file) return;
  const labels = $("labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  const out = $("classify-result");
  if (labels.length < 2) {
    out.textContent = "Give at least two labels, separated by commas.";
    return;
  }
  const form = new FormData();
  form.append("image", state.file, state.file.name || "upload");
  for (const label of labels) form.append("labels", label);
  form.append("compare", wantCompare() ? "true" : "false");
  out.textContent = "Classifying\u2026";
  try {
    const { data, ms: roundTrip } = await api("/api/classify", { method: "POST", body: form });
    const describe = (c) =>
      c.model + ": " + c.scores.slice(0, 3).map((s) => s.label + " " + (100 * s.score).toFixed(0) + "%").join(", ");
    const lines = [describe(data.result)];
    if (data.compare) lines.push(describe(data.compare));
    out.textContent = lines.join(" | ") + " (" + ms(roundTrip) + ")";
  } catch (err) {
    out.textContent = err.message;
  }
}

// -- filters ----------------------------------------------------------------------------------

function buildFilters(facets) {
  const list = $("filter-list");
  list.replaceChildren();
  const title = state.info ? state.info.title_column : null;
  for (const facet of facets) {
    if (facet.column === title || facet.truncated || facet.values.length < 2) continue;
    const id = "filter-" + facet.column;
    const select = el("select", { id, name: facet.column, "data-column": facet.column });
    select.append(el("option", { value: "", text: "Any" }));
    for (const item of facet.values) {
      select.append(el("option", { value: String(item.value), text: item.value + " (" + item.count + ")" }));
    }
    select.addEventListener("change", () => {
      state.filters[facet.column] = select.value;
      updateFilterCount();
      run();
    });
    list.append(el("label", { class: "filter", htmlFor: id }, el("span", { text: facet.column }), select));
  }
  if (!list.children.length) list.append(el("p", { class: "muted", text: "No columns to filter on." }));
}

function updateFilterCount() {
  const n = Object.keys(activeFilters()).length;
  $("filter-count").textContent = n ? "(" + n + ")" : "";
}

// -- start ------------------------------------------------------------------------------------

function wireDrop() {
  let depth = 0;
  const overlay = $("drop-overlay");
  const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    overlay.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  window.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    searchImage(event.dataTransfer.files[0]);
  });
  const zone = $("dropzone");
  zone.addEventListener("click", () => $("file").click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("file").click();
    }
  });
}

async function start() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("q").value.trim();
    if (!text) {
      showError("Type something to search for.");
      return;
    }
    searchText(text);
  });
  $("file").addEventListener("change", (event) => {
    searchImage(event.target.files[0]);
    event.target.value = "";
  });
  $("k").addEventListener("change", run);
  $("compare").addEventListener("change", run);
  $("clear-filters").addEventListener("click", () => {
    state.filters = {};
    for (const select of $("filter-list").querySelectorAll("select")) select.value = "";
    updateFilterCount();
    run();
  });
  $("clear-query").addEventListener("click", () => {
    clearBanner();
    if (state.mode !== "text") {
      state.mode = state.text ? "text" : null;
      if (state.mode) run();
    }
  });
  $("classify-form").addEventListener("submit", classify);
  wireDrop();
  if (window.matchMedia("(max-width: 720px)").matches) $("filters-box").open = false;

  try {
    const [info, facets] = await Promise.all([api("/api/info"), api("/api/facets?limit=60")]);
    state.info = info.data;
    $("compare-toggle").hidden = !state.info.compare;
    $("catalog-info").textContent =
      state.info.products + " products \u00b7 model " + shortModel(state.info.model) +
      (state.info.compare ? " \u00b7 compare with " + shortModel(state.info.compare.model) : "");
    buildFilters(facets.data.facets);
  } catch (err) {
    showError("Cannot load the catalog description: " + err.message);
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
