// Flows: poll api/flows (under this dashboard's path) for audit records after the last one shown, newest at the top.
"use strict";
(function () {
  const body = document.getElementById("flows-body");
  const status = document.getElementById("flows-status");
  let last = 0;

  function row(flow) {
    const tr = document.createElement("tr");
    tr.dataset.seq = flow.seq;
    tr.dataset.direction = flow.direction;
    tr.dataset.kind = flow.kind;
    if (flow.item) tr.dataset.item = flow.item;
    const cells = [flow.seq, flow.at, flow.direction, flow.kind, flow.item || "", flow.peer || "", flow.reason || ""];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (i === 2) td.className = "dir-" + flow.direction;
      tr.append(td);
    });
    return tr;
  }

  async function poll() {
    try {
      const response = await fetch("api/flows?since=" + last, { credentials: "same-origin" });
      if (!response.ok) {
        const problem = await response.json().catch(() => ({ detail: response.statusText }));
        status.textContent = "Refused: " + problem.detail;
        return; // a refusal does not go away by asking again
      }
      const data = await response.json();
      for (const flow of data.flows) body.prepend(row(flow));
      last = data.last;
      status.textContent = body.children.length ? "" : "No envelope yet.";
    } catch (err) {
      status.textContent = "Node unreachable; retrying.";
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
