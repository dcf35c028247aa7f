// The B-scan viewer: one canvas for the B-scan with its overlays, one for the SLO or en-face
// image with the current B-scan's position. Tiles come at the width the canvas needs.
(function () {
  "use strict";
  const root = document.getElementById("viewer");
  if (!root) return;
  const bscanUrl = (i, w) => root.dataset.bscan.replace(/\/0\.png$/, "/" + i + ".png") + "?w=" + w;
  const overlayUrl = (i, w) => root.dataset.overlay.replace(/\/0\.json$/, "/" + i + ".json") + "?w=" + w;
  const canvas = document.getElementById("bscan");
  const ctx = canvas.getContext("2d");
  const fcanvas = document.getElementById("fundus");
  const fctx = fcanvas.getContext("2d");
  const slider = document.getElementById("slice");
  const label = document.getElementById("slice-label");
  const play = document.getElementById("play");
  const seg = document.getElementById("ov-seg");
  const defects = document.getElementById("ov-defects");
  const bright = document.getElementById("brightness");
  const contrast = document.getElementById("contrast");
  const COLORS = { ILM: "#28c850", RNFL: "#28c8e6", ONL_top: "#dc3cdc", ONL_bottom: "#dc3cdc", BM: "#f0c81e" };
  let geo = null, current = 0, timer = null, fundusImg = null;
  const images = new Map(), overlays = new Map();
  const tileWidth = () => Math.max(64, Math.round(canvas.clientWidth * (window.devicePixelRatio || 1)));

  function image(i) {
    const w = tileWidth(), key = i + ":" + w;
    if (!images.has(key)) {
      const img = new Image();
      img.decoding = "async";
      img.src = bscanUrl(i, w);
      images.set(key, img);
    }
    return images.get(key);
  }
  function overlay(i) {
    if (!overlays.has(i)) overlays.set(i, fetch(overlayUrl(i, tileWidth())).then(r => r.json()));
    return overlays.get(i);
  }
  function drawOverlay(ov) {
    const sx = canvas.width / ov.width, sy = canvas.height / ov.height;
    if (defects.checked) {
      ctx.fillStyle = "rgba(230,40,40,0.28)";
      for (const [a, b] of ov.defects) ctx.fillRect(a * sx, 0, (b - a) * sx, canvas.height);
    }
    if (seg.checked && ov.columns) {
      ctx.lineWidth = 1.5;
      for (const [name, rows] of Object.entries(ov.layers)) {
        ctx.strokeStyle = COLORS[name] || "#fff";
        ctx.beginPath();
        let pen = false;
        rows.forEach((y, k) => {
          if (y === null) { pen = false; return; }
          const x = ov.columns[k] * sx, yy = y * sy;
          if (pen) ctx.lineTo(x, yy); else ctx.moveTo(x, yy);
          pen = true;
        });
        ctx.stroke();
      }
    }
  }
  function drawFundus() {
    if (!fundusImg || !fundusImg.complete || !geo) return;
    fctx.clearRect(0, 0, fcanvas.width, fcanvas.height);
    fctx.drawImage(fundusImg, 0, 0, fcanvas.width, fcanvas.height);
    const sx = fcanvas.width / geo.fundus_width, sy = fcanvas.height / geo.fundus_height;
    fctx.lineWidth = 2;
    if (geo.lines) {
      geo.lines.forEach((l, k) => {
        if (k !== current && geo.lines.length > 1) return;
        fctx.strokeStyle = "#2ee65a";
        fctx.beginPath(); fctx.moveTo(l[0] * sx, l[1] * sy); fctx.lineTo(l[2] * sx, l[3] * sy); fctx.stroke();
      });
    } else if (geo.ring) {
      fctx.strokeStyle = "#2ee65a";
      fctx.beginPath(); fctx.ellipse(geo.ring[0] * sx, geo.ring[1] * sy, geo.ring[2] * sx, geo.ring[2] * sy, 0, 0, 2 * Math.PI); fctx.stroke();
    }
  }
  function draw() {
    const i = current, img = image(i);
    const paint = () => {
      if (i !== current) return;
      ctx.filter = "brightness(" + bright.value + "%) contrast(" + contrast.value + "%)";
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      ctx.filter = "none";
      canvas.dataset.shown = String(i);
      canvas.dataset.overlaid = "";
      if (seg.checked || defects.checked) {
        overlay(i).then(ov => {
          if (i !== current) return;
          drawOverlay(ov);
          canvas.dataset.overlaid = String(i);  // what is on screen now includes the overlay
        });
      }
      canvas.dataset.overlays = (seg.checked ? "seg " : "") + (defects.checked ? "defects" : "");
    };
    if (img.complete && img.naturalWidth) paint(); else img.onload = paint;
    label.textContent = "B-scan " + (i + 1) + " / " + geo.n;
    slider.value = String(i);
    drawFundus();
    // Neighbours next, so scrolling finds them cached.
    for (const d of [1, -1, 2]) if (i + d >= 0 && i + d < geo.n) image(i + d);
  }
  function go(i) {
    if (!geo) return;
    current = Math.max(0, Math.min(geo.n - 1, i));
    draw();
  }
  function toggle() {
    if (timer) { clearInterval(timer); timer = null; play.textContent = "Play"; root.dataset.playing = "0"; return; }
    play.textContent = "Stop"; root.dataset.playing = "1";
    timer = setInterval(() => go(current + 1 >= geo.n ? 0 : current + 1), 100);
  }
  function size() {
    // Pixels as stored, as wide as the pane allows while the whole B-scan stays in view.
    const fit = Math.floor(window.innerHeight * 0.72 * geo.width / geo.height);
    canvas.style.width = Math.min(canvas.parentElement.clientWidth - 330, 1100, fit) + "px";
    const w = canvas.clientWidth || 768;
    canvas.width = w;
    canvas.height = Math.round(w * geo.height / geo.width);
    const fw = fcanvas.clientWidth || 300;
    fcanvas.width = fw;
    fcanvas.height = geo.fundus_width ? Math.round(fw * (geo.kind === "en-face" ? 1 : geo.fundus_height / geo.fundus_width)) : 0;
  }
  fetch(root.dataset.geometry).then(r => {
    if (!r.ok) throw new Error("geometry " + r.status);
    return r.json();
  }).then(g => {
    geo = g;
    slider.max = String(g.n - 1);
    size();
    current = Math.floor((g.n - 1) / 2);
    draw();
    document.getElementById("fundus-kind").textContent =
      g.kind === "slo" ? "SLO" : g.kind === "en-face" ? "en-face projection (no SLO in the file)" : "no SLO in this file";
    if (g.fundus_width) {
      fundusImg = new Image();
      fundusImg.onload = drawFundus;
      fundusImg.src = root.dataset.fundus + "?w=" + Math.round(fcanvas.width * (window.devicePixelRatio || 1));
    }
    root.dataset.ready = "1";
  }).catch(e => { label.textContent = "cannot show this scan: " + e.message; });

  slider.addEventListener("input", () => go(parseInt(slider.value, 10)));
  play.addEventListener("click", toggle);
  for (const el of [seg, defects, bright, contrast]) el.addEventListener("input", draw);
  canvas.addEventListener("wheel", ev => { ev.preventDefault(); go(current + (ev.deltaY > 0 ? 1 : -1)); }, { passive: false });
  document.addEventListener("keydown", ev => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 }[ev.key];
    if (step) { ev.preventDefault(); go(current + step); }
    else if (ev.key === "Home") go(0);
    else if (ev.key === "End") go(geo ? geo.n - 1 : 0);
    else if (ev.key === " ") { ev.preventDefault(); toggle(); }
  });
  fcanvas.addEventListener("click", ev => {
    if (!geo || !geo.lines) return;
    const y = ev.offsetY / fcanvas.height * geo.fundus_height;
    let best = 0, dist = Infinity;
    geo.lines.forEach((l, k) => { const d = Math.abs((l[1] + l[3]) / 2 - y); if (d < dist) { dist = d; best = k; } });
    go(best);
  });
  document.getElementById("session-scans").addEventListener("change", ev => { window.location = ev.target.value; });
  window.addEventListener("resize", () => { if (geo) { images.clear(); size(); draw(); } });
})();
