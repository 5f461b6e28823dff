// Live tracks: draw launch points, trajectories and impact points as track updates arrive.
// An update is the stream's contract (GET /stream/tracks/sse, event "track"): its points are the
// new samples, appended to the track's polyline; "final" marks the last update of a track.
"use strict";
const GsomiaTracks = (function () {
  const SVG = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function create(svg, table) {
    const d = svg.dataset;
    const west = Number(d.west), north = Number(d.north), kx = Number(d.kx), ky = Number(d.ky);
    const layer = svg.querySelector("#tracks");
    const tracks = new Map();
    const xy = (p) => [((p.lon - west) * kx).toFixed(1), ((north - p.lat) * ky).toFixed(1)];

    function draw(id) {
      const g = svgEl("g", { class: "track", "data-track-id": id });
      const line = svgEl("polyline", { class: "trajectory", points: "" });
      const launch = svgEl("circle", { class: "launch", r: 5 });
      const label = svgEl("text", { class: "track-label" });
      const title = svgEl("title");
      g.append(line, launch, label, title);
      layer.append(g);
      const tr = document.createElement("tr");
      tr.dataset.trackId = id;
      for (let i = 0; i < 9; i++) tr.append(document.createElement("td"));
      if (table) table.append(tr);
      return { g, line, launch, label, title, tr, impact: null, points: [] };
    }

    function apply(update) {
      let t = tracks.get(update.track_id);
      if (!t) { t = draw(update.track_id); tracks.set(update.track_id, t); }
      t.points.push(...update.points.map(xy));
      t.line.setAttribute("points", t.points.map((p) => p.join(",")).join(" "));
      const [lx, ly] = xy(update.launch);
      t.launch.setAttribute("cx", lx);
      t.launch.setAttribute("cy", ly);
      t.label.setAttribute("x", (Number(lx) + 7).toFixed(1));
      t.label.setAttribute("y", (Number(ly) - 7).toFixed(1));
      t.label.textContent = update.track_id;
      if (update.impact) {
        const [ix, iy] = xy(update.impact);
        if (!t.impact) { t.impact = svgEl("circle", { class: "impact", r: 7 }); t.g.append(t.impact); }
        t.impact.setAttribute("cx", ix);
        t.impact.setAttribute("cy", iy);
      }
      t.g.dataset.originator = update.originator;
      t.g.dataset.route = update.route;
      t.g.dataset.points = String(t.points.length);
      t.g.dataset.final = String(update.final);
      t.g.classList.toggle("final", update.final);
      t.title.textContent = update.track_id + " (" + update.missile_class + ") from " + update.originator +
        ", " + update.route + (update.agreement ? " under " + update.agreement : "");
      const cells = [update.track_id, update.originator, update.missile_class, update.route,
        update.agreement || "", t.points.length, update.quality.toFixed(2), update.update_ts,
        update.final ? "final" : "in flight"];
      cells.forEach((text, i) => { t.tr.children[i].textContent = String(text); });
      return t.g;
    }

    return { apply, tracks };
  }

  function connect(map, url, status) {
    const source = new EventSource(url);
    source.addEventListener("open", () => { status.textContent = "live"; });
    source.addEventListener("track", (e) => {
      map.apply(JSON.parse(e.data));
      status.textContent = "live · " + map.tracks.size + " track(s)";
    });
    source.addEventListener("error", () => {
      // CLOSED: the node refused the stream (no stream here, or no session); the browser will not retry
      status.textContent = source.readyState === EventSource.CLOSED
        ? "no track stream at this node" : "stream interrupted; reconnecting…";
    });
    return source;
  }

  return { create, connect };
})();

(function () {
  const svg = document.getElementById("map");
  if (!svg) return;
  const map = GsomiaTracks.create(svg, document.getElementById("tracks-body"));
  window.gsomiaTrackMap = map;
  GsomiaTracks.connect(map, svg.dataset.stream, document.getElementById("tracks-status"));
})();
