// fashionclip search page: the hints that keep a user from being misled.
// * Weak match: when a text query's best score is below the model's threshold
//   (GET /api/info -> weak_match_below, chosen from data per model: docs/faults.md), a note
//   says that nothing in the catalog fits the query well; the closest products still show.
// * Filter counts that follow the filters: after a filter changes, each filter's value counts
//   are asked again (GET /api/facets?filters=...): a column counts the products that the other
//   columns' filters allow, so "(0)" means that choice leaves nothing.
// app.js calls window.fashionclipFaults.afterRender(data, info) after showing results; the
// filter listeners are attached here (event delegation), so app.js needs no other change.
"use strict";

window.fashionclipFaults = (() => {
  let counted = "{}"; // the filters the shown counts are for

  function weakMatchNote(data, info) {
    const old = document.getElementById("weak-match");
    if (old) old.remove();
    // one threshold per search mode: a cosine (vector) and a fused score (hybrid) differ in scale
    const cuts = info ? info.weak_match_below : null;
    const cut = cuts ? cuts[data.mode || "vector"] : undefined;
    const hits = data.results ? data.results.results : [];
    if (cut === null || cut === undefined || data.kind !== "text" || !hits.length) return;
    const best = hits[0].score;
    if (best >= cut) return;
    const note = document.createElement("p");
    note.id = "weak-match";
    note.className = "weak-match";
    note.setAttribute("role", "note");
    note.textContent =
      "Nothing in this catalog matches \u201c" + data.query.text + "\u201d well (best score " +
      best.toFixed(3) + ", weak below " + cut.toFixed(3) + "). These are the closest products; " +
      "try other words or search by image.";
    document.getElementById("results").prepend(note); // cleared with the results it belongs to
  }

  function currentFilters() {
    const filters = {};
    for (const select of document.querySelectorAll("#filter-list select[data-column]")) {
      if (select.value !== "") filters[select.dataset.column] = select.value;
    }
    return filters;
  }

  async function refreshCounts() {
    const filters = currentFilters();
    const key = JSON.stringify(filters);
    if (key === counted) return;
    counted = key;
    const url = "/api/facets?limit=1000&filters=" + encodeURIComponent(key);
    let data;
    try {
      const response = await fetch(url);
      if (!response.ok) return; // the counts stay as they were; the search shows any error
      data = await response.json();
    } catch (err) {
      return;
    }
    if (key !== counted) return; // a newer change is being counted
    for (const facet of data.facets) {
      const select = document.querySelector('#filter-list select[data-column="' + CSS.escape(facet.column) + '"]');
      if (!select) continue;
      const counts = new Map(facet.values.map((v) => [String(v.value), v.count]));
      for (const option of select.options) {
        if (!option.value || !counts.has(option.value)) continue;
        option.textContent = option.value + " (" + counts.get(option.value) + ")";
      }
    }
    document.getElementById("filter-list").dataset.countedFor = key;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("filter-list");
    if (list) list.addEventListener("change", () => refreshCounts());
    const clear = document.getElementById("clear-filters");
    if (clear) clear.addEventListener("click", () => setTimeout(refreshCounts, 0));
  });

  return {
    afterRender(data, info) {
      weakMatchNote(data, info);
      refreshCounts(); // filters restored from a URL or Back/Forward
    },
  };
})();
