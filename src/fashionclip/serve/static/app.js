// fashionclip search page: plain JavaScript, no build step, talks to the JSON API of the same
// server (described at /openapi.json). State: the current query (text, image or "like" a
// product), filters, k, compare; mirrored in the URL (?q=, ?like=, ?f.<column>=, ?k=,
// ?compare=1) so that a search can be linked, reloaded, and walked with Back/Forward.
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
  images: new Map(), // history key -> File of an image search (files cannot live in the URL)
};

// Values asked per facet: all of them for any real catalog column (articleType has 116).
const FACET_LIMIT = 1000;
// Readable names of well-known columns; others are split from camelCase / snake_case.
const COLUMN_LABELS = {
  articleType: "Article type",
  baseColour: "Colour",
  masterCategory: "Category",
  subCategory: "Subcategory",
  usage: "Usage",
  season: "Season",
  gender: "Gender",
  year: "Year",
};
const EXAMPLES = ["red summer dress", "black leather handbag", "men running shoes", "blue denim jeans"];

function columnLabel(column) {
  if (COLUMN_LABELS[column]) return COLUMN_LABELS[column];
  const words = column.replace(/[_-]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

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

// An error about the search: the results shown were for another search, so they go.
function fail(message) {
  $("status").textContent = "";
  $("results").replaceChildren();
  $("results").classList.remove("compare");
  showError(message);
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
      const extra = window.fcHybrid ? window.fcHybrid.extend("text") : {};
      result = await postJSON("/api/search/text", { query: state.text, k, filters, compare, ...extra });
    } else if (state.mode === "like") {
      const extra = window.fcHybrid ? window.fcHybrid.extend("like") : {};
      result = await postJSON("/api/search/like", { id: state.like.id, k, filters, compare, ...extra });
    } else {
      const form = new FormData();
      form.append("image", state.file, state.file.name || "upload");
      form.append("k", String(k));
      form.append("filters", JSON.stringify(filters));
      form.append("compare", compare ? "true" : "false");
      const extra = window.fcHybrid ? window.fcHybrid.extend("image") : {}; // words, mode
      for (const [key, value] of Object.entries(extra)) for (const v of [].concat(value)) form.append(key, v);
      result = await api("/api/search/image", { method: "POST", body: form });
    }
    if (seq !== state.seq) return;
    render(result.data, result.ms);
    if (window.fcHybrid) window.fcHybrid.show(result.data);
  } catch (err) {
    if (seq !== state.seq) return;
    fail(err.message); // never leave the previous search's results under an error
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
  if (window.fashionclipFaults) window.fashionclipFaults.afterRender(data, state.info); // faults.js
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
  for (const group of groupDuplicates(list.results)) grid.append(card(group[0], group.slice(1)));
  section.append(grid);
  return section;
}

// Byte-identical images (same content_hash) listed as several products: one card each group.
function groupDuplicates(hits) {
  const groups = new Map();
  for (const hit of hits) {
    const key = hit.content_hash || "id:" + hit.id;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(hit);
  }
  return [...groups.values()];
}

function card(hit, duplicates = []) {
  const keys = (state.info && state.info.key_columns) || [];
  const meta = keys
    .map((column) => hit.metadata[column])
    .filter((value) => value !== null && value !== undefined && value !== "")
    .join(" \u00b7 ");
  // The name is read once: the picture is decorative (alt=""), the card has no tooltip.
  const image = el("img", {
    src: hit.image_url || thumbUrl(hit.id),
    alt: "",
    loading: "lazy",
    decoding: "async",
  });
  image.addEventListener("error", () => image.closest(".thumb").classList.add("missing"));
  const button = el(
    "button",
    {
      type: "button",
      class: "card",
      "data-id": hit.id,
    },
    el("span", { class: "thumb" }, image),
    el("span", { class: "title", text: hit.title }),
    meta ? el("span", { class: "meta", text: meta }) : null,
    el("span", { class: "score", text: "score " + hit.score.toFixed(3) }),
    duplicates.length
      ? el("span", {
          class: "dupes",
          text: "+" + duplicates.length + " with the same image: " + duplicates.map((d) => d.id).join(", "),
        })
      : null,
  );
  button.addEventListener("click", () => searchLike(hit.id, hit.title));
  const details = el("button", { type: "button", class: "details-button secondary", text: "Details" });
  details.setAttribute("aria-label", "Details of " + hit.title);
  details.addEventListener("click", () => openDetail(hit));
  return el("div", { class: "item" }, button, details);
}

// -- product detail panel ---------------------------------------------------------------------

// The column "more of this type" filters on: articleType when the catalog has it.
function typeColumn(metadata) {
  const keys = (state.info && state.info.key_columns) || [];
  return ["articleType", ...keys].find((c) => metadata[c] !== undefined && metadata[c] !== null && metadata[c] !== "");
}

function openDetail(hit) {
  state.detail = hit;
  $("detail-title").textContent = hit.title;
  const img = $("detail-img");
  img.classList.remove("missing");
  img.src = hit.image_url || thumbUrl(hit.id);
  const rows = [["Product id", hit.id]];
  const title = state.info ? state.info.title_column : null;
  for (const [column, value] of Object.entries(hit.metadata)) {
    if (column !== title) rows.push([columnLabel(column), value === null ? "\u2014" : String(value)]);
  }
  $("detail-meta").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  const column = typeColumn(hit.metadata);
  const typeButton = $("detail-type");
  typeButton.hidden = !column;
  if (column) typeButton.textContent = "More " + String(hit.metadata[column]);
  if (window.traverseShow) window.traverseShow(hit); // traverse.js: "like this, but darker"
  $("detail").showModal();
}

function moreOfThisType() {
  const hit = state.detail;
  const column = typeColumn(hit.metadata);
  $("detail").close();
  state.filters[column] = String(hit.metadata[column]);
  const select = $("filter-" + column);
  if (select) select.value = state.filters[column];
  updateFilterCount();
  if (!state.mode) {
    state.mode = "like";
    state.like = { id: hit.id, title: hit.title };
    showLike();
  }
  push();
  run();
}

// -- modes ------------------------------------------------------------------------------------

function setBanner(label, imageUrl, withClassify) {
  $("query-banner").hidden = false;
  $("query-label").replaceChildren(...label);
  const img = $("query-img");
  img.hidden = !imageUrl;
  if (imageUrl) img.src = imageUrl;
  else img.removeAttribute("src");
  $("classify-form").hidden = !withClassify;
  $("classify-result").textContent = "";
}

function clearBanner() {
  $("query-banner").hidden = true;
  $("query-img").removeAttribute("src");
}

function showText() {
  clearBanner();
}

function showLike() {
  $("q").value = ""; // the box shows what the results are for: nothing typed here
  setBanner(
    [el("span", { class: "muted", text: "Similar to " }), el("strong", { text: state.like.title || state.like.id })],
    thumbUrl(state.like.id),
    false,
  );
}

function showImage() {
  $("q").value = "";
  setBanner(
    [el("span", { class: "muted", text: "Searching by image " }), el("strong", { text: state.file.name || "" })],
    state.fileUrl,
    true,
  );
}

function searchText(text) {
  state.mode = "text";
  state.text = text;
  showText();
  push();
  run();
}

function searchLike(id, title) {
  state.mode = "like";
  state.like = { id, title };
  showLike();
  window.scrollTo({ top: 0, behavior: "smooth" });
  push();
  run();
}

function searchImage(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    fail("That file is not an image (" + file.type + ").");
    return;
  }
  const limit = state.info ? state.info.limits.max_upload_bytes : Infinity;
  if (file.size > limit) {
    fail("The image is " + file.size + " bytes; the limit is " + limit + " bytes.");
    return;
  }
  state.mode = "image";
  state.file = file;
  state.fileUrl = URL.createObjectURL(file); // kept: Back may return to this search
  showImage();
  push();
  run();
}

function showEmpty() {
  showError("");
  $("status").textContent = "";
  $("results").classList.remove("compare");
  const examples = EXAMPLES.map((text) => {
    const link = el("button", { type: "button", class: "link example", text });
    link.addEventListener("click", () => {
      $("q").value = text;
      searchText(text);
    });
    return link;
  });
  $("results").replaceChildren(
    el(
      "div",
      { class: "hint muted" },
      el("p", { text: "Type a query, choose or paste a photo, then click a product to see similar ones." }),
      el("p", {}, "Try: ", ...examples.flatMap((link, i) => (i ? [", ", link] : [link]))),
    ),
  );
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
  if (!zone) return;
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
  const changed = () => {
    if (state.mode) push();
    run();
  };
  $("k").addEventListener("change", changed);
  $("compare").addEventListener("change", changed);
  $("clear-filters").addEventListener("click", () => {
    state.filters = {};
    for (const select of $("filter-list").querySelectorAll("select")) select.value = "";
    for (const find of $("filter-list").querySelectorAll(".facet-find")) find.value = "";
    for (const select of $("filter-list").querySelectorAll("select")) narrow(select, "");
    updateFilterCount();
    if (state.mode) push();
    run();
  });
  $("clear-query").addEventListener("click", () => {
    clearBanner();
    state.mode = null;
    state.text = "";
    push();
    showEmpty();
  });
  window.addEventListener("popstate", (event) => {
    if (restore(event.state)) run();
  });
  // Paste an image (e.g. a screenshot) anywhere outside a text box to search by it.
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;
    event.preventDefault();
    const file = item.getAsFile();
    searchImage(new File([file], file.name || "pasted image", { type: file.type }));
  });
  $("query-img").addEventListener("error", () => {
    $("query-img").hidden = true; // a file the browser cannot show: no broken-image icon
  });
  $("classify-form").addEventListener("submit", classify);
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail-like").addEventListener("click", () => {
    $("detail").close();
    searchLike(state.detail.id, state.detail.title);
  });
  $("detail-type").addEventListener("click", moreOfThisType);
  $("detail-img").addEventListener("error", () => $("detail-img").classList.add("missing"));
  wireDrop();
  if (window.matchMedia("(max-width: 720px)").matches) $("filters-box").open = false;

  try {
    const [info, facets] = await Promise.all([api("/api/info"), api("/api/facets?limit=" + FACET_LIMIT)]);
    state.info = info.data;
    $("compare-toggle").hidden = !state.info.compare;
    $("catalog-info").textContent =
      state.info.products + " products \u00b7 model " + shortModel(state.info.model) +
      (state.info.compare ? " \u00b7 compare with " + shortModel(state.info.compare.model) : "");
    buildFilters(facets.data.facets);
  } catch (err) {
    showError("Cannot load the catalog description: " + err.message);
  }
  if (restore(history.state)) {
    history.replaceState(history.state || snapshot(), "", urlOf());
    run();
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
