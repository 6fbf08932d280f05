// The search page's URL and history (loaded after app.js, whose state it reads): the current
// search mirrored in the URL (?q=, ?like=, ?f.<column>=, ?k=, ?compare=1), a history entry
// per search, and the search of a URL restored on load and on Back/Forward.
"use strict";

function urlOf() {
  const params = new URLSearchParams();
  if (state.mode === "text") params.set("q", state.text);
  if (state.mode === "like") params.set("like", state.like.id);
  for (const [column, value] of Object.entries(activeFilters())) params.set("f." + column, value);
  if ($("k").value !== "24") params.set("k", $("k").value);
  if (wantCompare()) params.set("compare", "1");
  const query = params.toString();
  return "/" + (query ? "?" + query : "");
}

function snapshot() {
  const entry = { mode: state.mode, like: state.like, image: null };
  if (state.mode === "image") {
    entry.image = "img" + state.seq + "-" + Date.now();
    state.images.set(entry.image, { file: state.file, url: state.fileUrl });
  }
  return entry;
}

// A new history entry for the search about to run (not when restoring one).
function push() {
  history.pushState(snapshot(), "", urlOf());
}

// Restore the search of a URL (and history entry); returns whether there is one to run.
function restore(entry) {
  const params = new URLSearchParams(location.search);
  state.filters = {};
  for (const [key, value] of params) {
    if (key.startsWith("f.")) state.filters[key.slice(2)] = value;
  }
  for (const select of $("filter-list").querySelectorAll("select")) {
    select.value = state.filters[select.dataset.column] || "";
  }
  updateFilterCount();
  if (params.get("k")) $("k").value = params.get("k");
  $("compare").checked = params.get("compare") === "1";
  const image = entry && entry.image ? state.images.get(entry.image) : null;
  if (params.get("q")) {
    state.mode = "text";
    state.text = params.get("q");
    $("q").value = state.text;
    showText();
  } else if (params.get("like")) {
    state.mode = "like";
    const title = entry && entry.like && entry.like.id === params.get("like") ? entry.like.title : "";
    state.like = { id: params.get("like"), title };
    showLike();
  } else if (image) {
    state.mode = "image";
    state.file = image.file;
    state.fileUrl = image.url;
    showImage();
  } else {
    state.mode = null;
    $("q").value = "";
    clearBanner();
    showEmpty();
  }
  return Boolean(state.mode);
}
