/* Backup runs, live: the run page follows "run:<id>" (phase, bytes, MB/s, progress bar,
 * warnings, outcome) and re-reads the run from the API when something finishes; the runs
 * list follows its unfinished runs and updates their status badges. */
(function () {
  "use strict";
  if (!window.Live) return;

  const BADGES = { queued: "muted", running: "info", success: "ok", warning: "warn", failed: "danger", cancelled: "muted" };
  const labelsEl = document.getElementById("backup-labels");
  const LABELS = labelsEl ? JSON.parse(labelsEl.textContent) : { phase: {}, status: {} };

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
  function rate(bytesPerSecond) {
    return bytesPerSecond ? (bytesPerSecond / 1e6).toFixed(1) + " MB/s" : "—";
  }
  function ratio(value) { return value ? value.toFixed(2) + "×" : "—"; }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const s = Math.round(seconds), m = Math.floor(s / 60);
    if (m < 60) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
  }
  function when(iso) {
    // "YYYY-MM-DD HH:MM:SS" like the server-rendered dates.
    const d = new Date(iso), two = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " +
      two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }
  function setBadge(el, status, label) {
    if (!el) return;
    el.textContent = label || LABELS.status[status] || status;
    el.className = el.className.replace(/\bbadge-\w+/g, "").trim() + " badge-" + (BADGES[status] || "muted");
  }

  // --- the run page ---------------------------------------------------------------------
  const runRoot = document.querySelector("[data-run-id][data-run-api]");
  if (runRoot) {
    const runId = runRoot.dataset.runId;
    const field = (card, name) => card.querySelector('[data-field="' + name + '"]');
    const card = (id) => runRoot.querySelector('[data-vm-backup-id="' + id + '"]');

    function setProgress(el, fraction, status) {
      const bar = el.querySelector("[data-progress]");
      if (!bar) return;
      const percent = Math.max(0, Math.min(100, Math.round((fraction || 0) * 100)));
      bar.setAttribute("aria-valuenow", percent);
      bar.querySelector(".progress-bar").style.width = percent + "%";
      bar.querySelector(".progress-text").textContent = percent + " %";
      bar.classList.remove("progress-ok", "progress-danger");
      if (status === "success" || status === "warning") bar.classList.add("progress-ok");
      if (status === "failed") bar.classList.add("progress-danger");
    }
    function setBytes(el, name, value) {
      const target = field(el, name);
      if (target && value !== undefined && value !== null) { target.textContent = fileSize(value); target.dataset.bytes = value; }
    }
    function setWarnings(el, warnings) {
      const list = field(el, "warnings");
      if (!list) return;
      list.innerHTML = "";
      warnings.forEach((text) => { const li = document.createElement("li"); li.textContent = text; list.appendChild(li); });
      list.hidden = !warnings.length;
    }

    function setWaiting(el, text) {
      const target = field(el, "waiting");
      if (!target) return;
      target.textContent = text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
      target.hidden = !text;
    }

    function dropQueuedNote() {
      // "… queued." no longer holds once a worker has the run.
      document.querySelectorAll("[data-queued-message]").forEach((note) => note.remove());
    }

    function onEvent(topic, event) {
      dropQueuedNote();
      if (event.type === "run.finished") {
        setBadge(document.querySelector("[data-run-status]"), event.status);
        sync();
        return;
      }
      const el = card(event.vm_backup);
      if (!el) return;
      if (event.phase) field(el, "phase").textContent = LABELS.phase[event.phase] || event.phase;
      if (event.type === "vm_backup.phase") {
        field(el, "phase_message").textContent = event.message || "";
        const status = field(el, "status");
        if (status && status.textContent !== (LABELS.status.running)) setBadge(status, "running");
        setBadge(document.querySelector("[data-run-status]"), "running");
      } else if (event.type === "vm_backup.progress") {
        ["bytes_read", "bytes_processed", "bytes_new", "bytes_stored", "total_bytes"].forEach((n) => setBytes(el, n, event[n]));
        field(el, "rate").textContent = rate(event.rate);
        field(el, "dedup_ratio").textContent = ratio(event.bytes_new ? event.bytes_processed / event.bytes_new : null);
        field(el, "compression_ratio").textContent = ratio(event.bytes_stored ? event.bytes_new / event.bytes_stored : null);
        setProgress(el, event.progress, "running");
      } else if (event.type === "vm_backup.waiting") {
        setWaiting(el, event.message);
      } else if (event.type === "vm_backup.warning") {
        const list = field(el, "warnings");
        const li = document.createElement("li"); li.textContent = event.message; list.appendChild(li); list.hidden = false;
      } else if (event.type === "vm_backup.finished") {
        setBadge(field(el, "status"), event.status);
        sync();
      }
    }

    // The full picture from the API: after a finish, and once live updates flow (events
    // published before this page subscribed are not replayed).
    let syncing = false;
    function sync() {
      if (syncing) return;
      syncing = true;
      fetch(runRoot.dataset.runApi, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : null))
        .then((run) => { if (run) applyRun(run); })
        .catch(() => {})
        .finally(() => { syncing = false; });
    }
    function applyRun(run) {
      setBadge(document.querySelector("[data-run-status]"), run.status, run.status_display);
      const started = runRoot.querySelector('[data-run-field="started_at"]');
      if (started && run.started_at) started.textContent = when(run.started_at);
      else if (started && run.status !== "queued") started.textContent = "—";
      if (run.status !== "queued") dropQueuedNote();
      const finishedAt = runRoot.querySelector('[data-run-field="finished_at"]');
      if (finishedAt && run.finished_at) finishedAt.textContent = when(run.finished_at);
      run.vm_backups.forEach((vb) => {
        const el = card(vb.id);
        if (!el) return;
        setBadge(field(el, "status"), vb.status, vb.status_display);
        field(el, "phase").textContent = vb.phase_text || vb.phase_display;
        setWaiting(el, vb.status === "queued" || vb.status === "running" ? vb.waiting : "");
        field(el, "kind").textContent = vb.kind_text || vb.kind_display;
        ["bytes_read", "bytes_processed", "bytes_new", "bytes_stored", "total_bytes"].forEach((n) => setBytes(el, n, vb[n]));
        field(el, "dedup_ratio").textContent = ratio(vb.dedup_ratio);
        field(el, "compression_ratio").textContent = ratio(vb.compression_ratio);
        field(el, "duration").textContent = duration(vb.duration_seconds);
        const downtime = field(el, "downtime");
        if (downtime) downtime.textContent = duration(vb.downtime_seconds);
        if (vb.finished_at) field(el, "rate").textContent = rate(vb.rate);
        setProgress(el, vb.status === "success" || vb.status === "warning" ? 1 : vb.progress, vb.status);
        setWarnings(el, vb.warnings || []);
        if (vb.finished_at) el.querySelectorAll("[data-vm-cancel-form]").forEach((form) => form.remove());
        const error = field(el, "error");
        error.textContent = vb.error || ""; error.hidden = !vb.error;
        const point = field(el, "restore_point");
        if (vb.restore_point && point && point.hidden) {
          const link = document.createElement("a");
          link.href = point.dataset.pointsUrl + "?vm_uuid=" + encodeURIComponent(vb.vm_uuid);
          link.textContent = "restore points of " + vb.vm_name;
          point.textContent = "Restore point saved on " + vb.store_name + ": see the ";
          point.appendChild(link);
          point.hidden = false;
        }
      });
      const finished = ["success", "warning", "failed", "cancelled"].indexOf(run.status) >= 0;
      runRoot.dataset.finished = finished ? "true" : "false";
      if (finished) document.querySelectorAll("[data-cancel-form]").forEach((form) => form.remove());
    }

    Live.subscribe(["run:" + runId], onEvent);
    if (Live.state === "live") sync();
    Live.onStateChange((state) => { if (state === "live") sync(); });
  }

  // --- the runs list ----------------------------------------------------------------------
  const listRoot = document.querySelector("[data-runs-live]");
  if (listRoot && listRoot.dataset.runsLive) {
    const topics = listRoot.dataset.runsLive.split(",").filter(Boolean).map((id) => "run:" + id);
    Live.subscribe(topics, (topic, event) => {
      const row = listRoot.querySelector('[data-run-id="' + event.run + '"]');
      if (!row) return;
      const badge = row.querySelector('[data-field="status"]');
      if (event.type === "run.finished") setBadge(badge, event.status);
      else if (event.type.indexOf("vm_backup.") === 0 && event.type !== "vm_backup.finished") setBadge(badge, "running");
    });
  }
})();
