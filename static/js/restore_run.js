/* Live progress of one restore run: follows "restore:<id>" over Live.subscribe and reads the
 * run's JSON status whenever an event arrives (and every few seconds while live updates are
 * not connected), so a missed event never leaves the page stale. */
(function () {
  "use strict";
  const root = document.querySelector("[data-restore-run]");
  if (!root) return;
  const runId = root.dataset.restoreRun;
  const statusUrl = root.dataset.statusUrl;
  let finished = root.dataset.finished === "true";

  function fileSize(bytes) {
    // As sesamweb/units.py (the filesizeformat of every page, and the CLI): decimal units.
    if (bytes === null || bytes === undefined) return "—";
    let value = Number(bytes) || 0;
    if (Math.abs(value) < 1000) return value + (value === 1 ? " byte" : " bytes");
    const units = ["kB", "MB", "GB", "TB", "PB"];
    let unit = -1;
    do { value /= 1000; unit += 1; } while (Math.abs(value) >= 1000 && unit < units.length - 1);
    return value.toFixed(1) + "\u00a0" + units[unit];
  }

  function setText(name, text) {
    document.querySelectorAll('[data-run-field="' + name + '"]').forEach((el) => { el.textContent = text; });
  }
  // The stat cards (backups/includes/run_figures.html, the same as a backup's).
  function setFigure(name, text) {
    root.querySelectorAll('[data-field="' + name + '"]').forEach((el) => { el.textContent = text; });
  }

  function setProgress(percent, tone) {
    const bar = document.getElementById("restore-progress");
    if (!bar) return;
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    bar.setAttribute("aria-valuenow", value);
    bar.querySelector(".progress-bar").style.width = value + "%";
    bar.querySelector(".progress-text").textContent = value + " %";
    bar.classList.remove("progress-ok", "progress-danger");
    if (tone) bar.classList.add("progress-" + tone);
  }

  function apply(status) {
    setText("status_label", status.status_label);
    const badge = document.querySelector("[data-run-badge]");
    if (badge) badge.className = "badge badge-" + status.badge;
    setText("phase_label", status.phase_label || status.phase || "");
    setFigure("bytes_processed", fileSize(status.bytes_done));
    setFigure("total_bytes", fileSize(status.bytes_total));
    setFigure("rate", status.rate_text);
    setFigure("duration", status.duration_text);
    if (status.status !== "queued") document.querySelectorAll("[data-queued-message]").forEach((note) => note.remove());
    setText("started_text", status.started_text);
    setText("finished_text", status.finished_text);
    const cancel = document.querySelector("[data-cancel-form]");
    if (cancel && status.finished) cancel.hidden = true;
    const ok = status.status === "success" || status.status === "warning";
    const failed = status.status === "failed" || status.status === "cancelled";
    setProgress(status.percent, ok ? "ok" : failed ? "danger" : null);
    root.querySelector('[data-when="success"]').hidden = !ok;
    root.querySelector('[data-when="failed"]').hidden = !failed;
    setText("error", status.error || "");
    if (ok) {
      const link = root.querySelector("[data-restored-link]");
      link.textContent = "";
      if (status.restored_vm_url) {
        const a = document.createElement("a");
        a.href = status.restored_vm_url;
        a.textContent = "Open " + status.restored_vm_name;
        link.appendChild(a);
      } else if (status.restored_vm_uuid) {
        link.textContent = "Restored VM " + status.restored_vm_uuid;
      }
    }
    const warnings = root.querySelector("[data-run-warnings]");
    warnings.hidden = !(status.warnings && status.warnings.length);
    warnings.textContent = "";
    (status.warnings || []).forEach((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      warnings.appendChild(li);
    });
    finished = status.finished;
    root.dataset.finished = finished ? "true" : "false";
  }

  let pending = null;
  function refresh() {
    if (pending) return;
    pending = window.setTimeout(() => {
      fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : null))
        .then((status) => { if (status) apply(status); })
        .catch(() => {})
        .finally(() => { pending = null; });
    }, 250);
  }

  function onEvent(topic, event) {
    // Numbers in the event move the bar at once; the fetch that follows has the final word.
    if (event && event.bytes_total) {
      setFigure("bytes_processed", fileSize(event.bytes_done || 0));
      setFigure("total_bytes", fileSize(event.bytes_total));
      setProgress(100 * (event.bytes_done || 0) / event.bytes_total);
      if (event.rate !== undefined) setFigure("rate", (event.rate / 1e6).toFixed(1) + " MB/s");
    }
    refresh();
  }

  if (window.Live) {
    Live.subscribe(["restore:" + runId], onEvent);
    Live.onStateChange((state) => { if (state === "live") refresh(); });
  }
  // Safety net while the websocket is not connected (or an event was missed).
  window.setInterval(() => {
    if (!finished && (!window.Live || Live.state !== "live")) refresh();
  }, 3000);
  window.setInterval(() => { if (!finished) refresh(); }, 10000);
})();
