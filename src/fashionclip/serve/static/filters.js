// The search page's filters (loaded after app.js): one select per catalog column from the
// facets, most frequent values first, with a type-ahead box for long columns; a change runs
// the search again and becomes a history entry.
"use strict";

// Facets with more values than this get a type-ahead box above their list.
const LONG_FACET = 12;

function buildFilters(facets) {
  const list = $("filter-list");
  list.replaceChildren();
  const title = state.info ? state.info.title_column : null;
  for (const facet of facets) {
    if (facet.column === title || facet.values.length < 2) continue;
    list.append(filterBox(facet));
  }
  if (!list.children.length) list.append(el("p", { class: "muted", text: "No columns to filter on." }));
}

// One filter: a select of the column's values (most frequent first) and, for long columns
// such as articleType, a type-ahead box that narrows the list as you type.
function filterBox(facet) {
  const id = "filter-" + facet.column;
  const label = columnLabel(facet.column);
  const select = el("select", { id, name: facet.column, "data-column": facet.column });
  select.append(el("option", { value: "", text: "Any" }));
  for (const item of facet.values) {
    select.append(el("option", { value: String(item.value), text: item.value + " (" + item.count + ")" }));
  }
  select.addEventListener("change", () => {
    state.filters[facet.column] = select.value;
    updateFilterCount();
    if (state.mode) push();
    else history.replaceState(snapshot(), "", urlOf());
    run();
  });
  const box = el("div", { class: "filter" }, el("label", { htmlFor: id, text: label }));
  if (facet.values.length > LONG_FACET) {
    const find = el("input", {
      id: id + "-find",
      type: "search",
      class: "facet-find",
      placeholder: "Type to find (" + facet.values.length + (facet.truncated ? "+" : "") + ")",
    });
    find.setAttribute("aria-label", "Find a value of " + label);
    find.setAttribute("aria-controls", id);
    find.addEventListener("input", () => narrow(select, find.value));
    find.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      const first = [...select.options].find((o) => o.value && !o.hidden);
      if (first) {
        select.value = first.value;
        select.dispatchEvent(new Event("change"));
      }
    });
    box.append(find);
  }
  box.append(select);
  return box;
}

function narrow(select, text) {
  const needle = text.trim().toLowerCase();
  for (const option of select.options) {
    option.hidden = Boolean(option.value) && !option.value.toLowerCase().includes(needle);
  }
}

function updateFilterCount() {
  const n = Object.keys(activeFilters()).length;
  $("filter-count").textContent = n ? "(" + n + ")" : "";
}
