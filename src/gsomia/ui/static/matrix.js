// Who may share what: ask api/matrix (under this dashboard's path) for the chosen instant and draw the party-by-party table.
"use strict";
(function () {
  const form = document.getElementById("matrix-controls");
  const slider = document.getElementById("when");
  const shown = document.getElementById("when-text");
  const holder = document.getElementById("matrix");
  const states = document.getElementById("matrix-agreements");
  const status = document.getElementById("matrix-status");
  const first = new Date(form.dataset.first + "T00:00:00Z");
  let asked = 0;
  let timer = null;

  function dayOf(offset) {
    const d = new Date(first.getTime() + Number(offset) * 86400000);
    return d.toISOString().slice(0, 10);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function explain(cell) {
    document.getElementById("explain-title").textContent =
      cell.sender + " → " + cell.recipient + ": " + (cell.route === "none" ? "nothing may go" : cell.level + " " + cell.route);
    const list = document.getElementById("explain-lines");
    list.replaceChildren(...cell.explanation.map((line) => el("li", {}, line)));
    document.getElementById("explain").hidden = false;
  }

  function draw(data, day) {
    const cells = new Map(data.cells.map((c) => [c.sender + ">" + c.recipient, c]));
    const table = el("table", { "data-at": day });
    const head = el("tr");
    head.append(el("th", {}, "from \\ to"));
    for (const p of data.parties) head.append(el("th", { scope: "col" }, p));
    table.appendChild(el("thead")).append(head);
    const body = table.appendChild(el("tbody"));
    for (const sender of data.parties) {
      const row = body.appendChild(el("tr"));
      row.append(el("th", { scope: "row" }, sender));
      for (const recipient of data.parties) {
        if (sender === recipient) { row.append(el("td", { class: "self" })); continue; }
        const cell = cells.get(sender + ">" + recipient);
        const kind = cell.route === "direct" ? "direct" : cell.route === "none" ? "none" : "hub";
        const button = el("button", {
          type: "button",
          class: "cell route-" + kind,
          "data-sender": sender,
          "data-recipient": recipient,
          "data-route": cell.route,
          "data-level": cell.level || "",
          title: cell.explanation.join("\n"),
        });
        if (cell.route === "none") {
          button.append(el("strong", {}, "none"));
        } else {
          button.append(el("strong", {}, cell.level + " → " + cell.marking.split(" ").slice(1).join(" ")));
          button.append(el("br"), el("small", {}, cell.route + " · " + cell.agreement));
        }
        button.addEventListener("click", () => explain(cell));
        row.appendChild(el("td")).append(button);
      }
    }
    holder.replaceChildren(table);
    states.replaceChildren(...data.agreements.map((a) =>
      el("li", { "data-agreement": a.id, "data-status": a.status },
        a.status.replaceAll("_", " ") + " — " + a.explanation +
        (a.set_aside.length ? " (" + a.set_aside.join("; ") + ")" : ""))));
    holder.dataset.at = day;
    holder.dataset.without = data.without.join(",");
    status.textContent = "";
  }

  async function load() {
    const day = dayOf(slider.value);
    shown.textContent = day;
    const query = new URLSearchParams({
      at: day,
      purpose: document.getElementById("purpose").value,
      topic: document.getElementById("topic").value,
    });
    for (const box of form.querySelectorAll("input[name=without]:checked")) query.append("without", box.value);
    const mine = ++asked;
    const response = await fetch("api/matrix?" + query, { credentials: "same-origin" });
    if (mine !== asked) return; // a later move of the slider has already asked
    if (!response.ok) {
      const problem = await response.json().catch(() => ({ detail: response.statusText }));
      status.textContent = "Refused: " + problem.detail;
      return;
    }
    draw(await response.json(), day);
  }

  function soon() {
    shown.textContent = dayOf(slider.value);
    clearTimeout(timer);
    timer = setTimeout(load, 60);
  }

  slider.addEventListener("input", soon);
  form.addEventListener("change", soon);
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
})();
