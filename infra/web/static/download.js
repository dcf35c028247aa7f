// Starts the zip download (the browser saves it) and shows its progress from the audit row.
(function () {
  "use strict";
  const el = document.getElementById("download");
  if (!el) return;
  const bar = document.getElementById("download-progress");
  const status = document.getElementById("download-status");
  const total = parseInt(el.dataset.total, 10);
  const frame = document.createElement("iframe");
  frame.style.display = "none";
  frame.src = el.dataset.file;
  document.body.appendChild(frame);
  const mb = b => (b / 1048576).toFixed(1) + " MB";
  const poll = () => fetch(el.dataset.progress).then(r => r.json()).then(p => {
    bar.value = p.scans;
    const scans = n => n + (n === 1 ? " scan" : " scans");
    status.textContent = p.finished ? "done: " + scans(total) + ", " + mb(p.bytes) : p.scans + " of " + scans(total) + ", " + mb(p.bytes);
    if (p.finished) {
      el.dataset.finished = "1";
      document.getElementById("download-again").hidden = true;  // one stream per download row
    } else setTimeout(poll, 400);
  }).catch(() => setTimeout(poll, 1000));
  setTimeout(poll, 200);
})();
