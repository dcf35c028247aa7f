// The group view: every scan's value as a point over a box plot, thresholds as lines; a click on
// a point opens that scan's report. plotly.js comes from this server (the plotly package).
(function () {
  "use strict";
  const el = document.getElementById("plot");
  if (!el) return;
  const thresholds = JSON.parse(el.dataset.thresholds || "{}");
  fetch(el.dataset.url).then(r => r.json()).then(data => {
    const pts = data.points;
    document.getElementById("plot-count").textContent = pts.length + (pts.length === 1 ? " scan" : " scans");
    const colour = { pass: "#2b8a3e", fail: "#c92a2a" };
    // A box of the distribution, and every scan as a point beside it (a strip plot with a
    // fixed jitter, so the same data always draws the same picture), coloured by OSCAR-IB.
    const box = {
      type: "box", y: pts.map(p => p.y), x0: 0, name: "distribution", boxpoints: false,
      fillcolor: "rgba(120,140,170,0.15)", line: { color: "#7a8699" }, hoverinfo: "y",
    };
    const jitter = i => (((i * 2654435761) % 1000) / 1000 - 0.5) * 0.5;
    const strip = {
      type: "scatter",
      mode: "markers", name: "scans", x: pts.map((p, i) => 0.8 + jitter(i)), y: pts.map(p => p.y),
      text: pts.map(p => p.label), customdata: pts.map(p => p.url),
      marker: { size: 8, opacity: 0.8, color: pts.map(p => colour[p.overall] || "#555") },
      hovertemplate: "%{text}<br>%{y}<extra></extra>",
    };
    const shapes = [], annotations = [];
    for (const [kind, value] of Object.entries(thresholds)) {
      const c = kind === "fail" ? "#c92a2a" : "#e8a400";
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: value, y1: value, line: { color: c, dash: "dash", width: 2 } });
      annotations.push({ xref: "paper", x: 1, y: value, text: kind + " " + value, showarrow: false, xanchor: "right", yanchor: "bottom", font: { color: c } });
    }
    Plotly.newPlot(el, [box, strip], {
      margin: { t: 30, r: 20, b: 40, l: 70 }, height: 520, shapes, annotations,
      showlegend: false, xaxis: { visible: false, range: [-0.6, 1.3] },
      yaxis: { title: { text: el.dataset.title + (el.dataset.unit ? " (" + el.dataset.unit + ")" : "") }, zeroline: false },
    }, { displaylogo: false, responsive: true, toImageButtonOptions: { format: "png", filename: el.dataset.title } });
    el.on("plotly_click", ev => { const p = ev.points[0]; if (p && p.customdata) window.location = p.customdata; });
    el.dataset.ready = "1";
  });
})();
