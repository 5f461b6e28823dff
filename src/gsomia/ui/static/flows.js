// Flows: the page arrives with the latest flows drawn; new ones (sent, received, refused) and each new
// signed tree head come from the node's live feed (GET <dashboard>/feed/sse?type=flow&type=tree-head,
// decided for this reader: flows reach readers of the audit records alone), newest at the top. The
// browser's EventSource resumes by Last-Event-ID after a dropped connection. Only text is written.
"use strict";
(function () {
  const table = document.getElementById("flows");
  if (!table) return;
  const body = document.getElementById("flows-body");
  const status = document.getElementById("flows-status");
  const head = document.getElementById("flows-head");

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

  function flowed(message) {
    const flow = JSON.parse(message.data).flow;
    if (body.querySelector("tr[data-seq='" + CSS.escape(String(flow.seq)) + "']")) return; // drawn already
    body.prepend(row(flow));
    status.textContent = "";
  }

  function signed(message) {
    const event = JSON.parse(message.data);
    if (event.size <= Number(head.dataset.size)) return;
    head.dataset.size = event.size;
    head.textContent = "Signed tree head: " + event.size + " record(s), root " + event.root.slice(0, 16) + "… at " + event.at;
  }

  const source = new EventSource(table.dataset.feed);
  source.onopen = () => { table.dataset.live = "true"; };
  source.onerror = () => { table.dataset.live = "false"; status.textContent = "Reconnecting to the node."; };
  source.addEventListener("flow", flowed);
  source.addEventListener("tree-head", signed);
})();
