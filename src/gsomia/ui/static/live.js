// Live items: follow the node's feed of what changed (GET <dashboard>/feed/sse, each event decided for
// this reader by the node) instead of asking again. On the items page a change marks the item's row
// (a new item gets a row at the top); on an item's page a change to that item is announced. Only
// text is written into the page (textContent), never markup from the feed.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const status = document.getElementById("live-status");
  const changes = document.getElementById("live-changes");
  const table = document.querySelector("table.items tbody");
  const only = live.dataset.item || null;
  const NEW = new Set(["arrived", "ingested", "derived"]);

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function newRow(event) {
    const tr = document.createElement("tr");
    tr.dataset.itemId = event.item;
    const link = document.createElement("a");
    // whose item: two originators' items may share an id here (issue 22 §4)
    link.href =
      live.dataset.base + "/items/" + encodeURIComponent(event.item) +
      "?originator=" + encodeURIComponent(event.originator);
    link.textContent = event.item;
    const first = document.createElement("td");
    first.append(link);
    tr.append(
      first,
      cell(event.originator + " " + event.classification),
      cell("(open the item for your label)"),
      cell(event.topics.slice().sort().join(", ")),
      cell(event.agreement ? "under " + event.agreement : "originated here"),
      cell(event.at),
    );
    const empty = table.querySelector("td[colspan]");
    if (empty) empty.parentElement.remove();
    table.prepend(tr);
    return tr;
  }

  function note(event) {
    const li = document.createElement("li");
    li.dataset.item = event.item;
    li.dataset.change = event.type;
    li.textContent = event.at + "  " + event.item + ": " + event.type + " (now " + event.state + ")";
    changes.prepend(li);
    while (changes.children.length > 50) changes.lastElementChild.remove();
  }

  function apply(event) {
    if (only !== null && event.item !== only) return;
    note(event);
    if (!table) return;
    let row = table.querySelector("tr[data-item-id='" + CSS.escape(event.item) + "']");
    if (!row && NEW.has(event.type)) row = newRow(event);
    if (row) {
      row.dataset.change = event.type;
      row.dataset.state = event.state;
    }
  }

  // the item events alone: a security officer's flows and the tree heads are the flows page's
  const TYPES = ["ingested", "arrived", "derived", "label-changed", "recalled", "portion-recalled", "destroyed",
    "portion-destroyed"];
  const source = new EventSource(live.dataset.feed + "?" + TYPES.map((t) => "type=" + encodeURIComponent(t)).join("&"));
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting"; }; // EventSource resumes by Last-Event-ID
  for (const type of TYPES) {
    source.addEventListener(type, (message) => apply(JSON.parse(message.data)));
  }
})();
