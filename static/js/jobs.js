/* Backup job pages:
 *  - the job form shows the fields of the chosen selection mode and, live, the VMs the
 *    selection picks now (GET selection-preview/ with the form's "What" fields);
 *  - the schedule form shows the fields of the chosen kind of schedule and, live, the cron,
 *    its description and the next five run times (GET schedule-preview/);
 *  - the job page follows the run it started (or one running) VM by VM without reloading;
 *  - the retention preview draws kept / removed points per VM on an SVG timeline.
 */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";

  function debounce(fn, ms) {
    let timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => response.json().then((body) => ({ ok: response.ok, body })));
  }
  function params(form, names) {
    const query = new URLSearchParams();
    new FormData(form).forEach((value, name) => {
      if (name !== "csrfmiddlewaretoken" && (!names || names.indexOf(name) >= 0)) query.append(name, value);
    });
    return query;
  }
  // Show the blocks whose data-when-<key> lists the checked value of radio group `name`.
  function toggleBlocks(form, name, key) {
    const checked = form.querySelector('input[name="' + name + '"]:checked');
    const value = checked ? checked.value : "";
    form.querySelectorAll("[data-when-" + key + "]").forEach((block) => {
      block.hidden = block.getAttribute("data-when-" + key).split(" ").indexOf(value) < 0;
    });
  }

  // --- job form ------------------------------------------------------------------------
  const jobForm = document.querySelector("[data-job-form]");
  if (jobForm) {
    const SELECTION = ["selection", "vms", "rule_pools", "rule_tags", "rule_name_pattern", "rule_power_states", "excluded_vms"];
    const panel = jobForm.querySelector("[data-selection-preview]");
    const count = panel.querySelector("[data-preview-count]");
    const list = panel.querySelector("[data-preview-list]");
    function refresh() {
      toggleBlocks(jobForm, "selection", "selection");
      const query = params(jobForm, SELECTION);
      getJSON(jobForm.dataset.selectionPreviewUrl + "?" + query.toString()).then(({ ok, body }) => {
        list.innerHTML = "";
        if (!ok) {
          count.textContent = Object.values(body.errors || {}).flat().join(" ") || "The selection cannot be evaluated.";
          return;
        }
        count.textContent = body.count === 1 ? "1 VM matches now." : body.count + " VMs match now.";
        if (body.truncated) count.textContent += " The first " + body.vms.length + " are listed.";
        body.vms.forEach((vm) => {
          const item = document.createElement("li");
          const link = document.createElement("a");
          link.href = vm.url; link.textContent = vm.name;
          item.appendChild(link);
          const meta = document.createElement("span");
          meta.className = "muted small";
          meta.textContent = " " + vm.pool + " · " + vm.power_state;
          item.appendChild(meta);
          list.appendChild(item);
        });
      }).catch(() => { count.textContent = "The preview is not available right now."; });
    }
    const later = debounce(refresh, 300);
    jobForm.addEventListener("change", later);
    jobForm.addEventListener("input", later);
    refresh();
  }

  // --- schedule form -------------------------------------------------------------------
  const scheduleForm = document.querySelector("[data-schedule-form]");
  if (scheduleForm) {
    const box = document.querySelector("[data-schedule-preview]");
    const description = box.querySelector("[data-schedule-description]");
    const cron = box.querySelector("[data-schedule-cron]");
    const next = box.querySelector("[data-schedule-next]");
    const error = box.querySelector("[data-schedule-error]");
    function refresh() {
      toggleBlocks(scheduleForm, "mode", "mode");
      getJSON(scheduleForm.dataset.previewUrl + "?" + params(scheduleForm).toString()).then(({ ok, body }) => {
        next.innerHTML = "";
        if (!ok) {
          error.textContent = Object.values(body.errors || {}).flat().join(" ");
          error.hidden = false;
          description.textContent = "Not a schedule yet.";
          cron.textContent = "";
          return;
        }
        error.hidden = true;
        description.textContent = body.description + " (" + body.timezone + ")";
        cron.textContent = body.cron;
        body.next.forEach((when) => {
          const item = document.createElement("li");
          item.textContent = when;
          next.appendChild(item);
        });
      }).catch(() => { description.textContent = "The preview is not available right now."; });
    }
    const later = debounce(refresh, 250);
    scheduleForm.addEventListener("change", later);
    scheduleForm.addEventListener("input", later);
    refresh();
  }

  // --- job page: follow the current run -------------------------------------------------
  const live = document.querySelector("[data-job-live]");
  if (live) {
    const BADGES = { queued: "muted", running: "info", success: "ok", warning: "warn", failed: "danger",
      cancelled: "muted", skipped: "warn" };
    const badge = live.querySelector("[data-run-badge]");
    const link = live.querySelector("[data-run-link]");
    const message = live.querySelector("[data-run-message]");
    const vmList = live.querySelector("[data-vm-progress]");
    let knownRun = Number(live.dataset.knownRun || 0);   // runs up to this one are older
    const following = live.dataset.following === "true";
    // Following a run just asked for: the first one newer than knownRun; otherwise the active one.
    let runId = !following && live.dataset.activeRun ? Number(live.dataset.activeRun) : null;
    let subscription = null, timer = null, busy = false;

    function setBadge(el, status, label) {
      el.textContent = label;
      el.className = "badge badge-" + (BADGES[status] || "muted");
    }
    function row(vb) {
      let item = vmList.querySelector('[data-vm-backup-id="' + vb.id + '"]');
      if (!item) {
        item = document.createElement("li");
        item.dataset.vmBackupId = vb.id;
        item.className = "vm-progress";
        item.innerHTML = '<div class="vm-progress-head"><strong data-name></strong> <span class="badge" data-status></span>' +
          ' <span class="muted small" data-phase></span></div>' +
          '<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0" data-progress>' +
          '<div class="progress-bar" style="width: 0%"></div><span class="progress-text">0 %</span></div>' +
          '<p class="muted small" data-reason></p>';
        item.querySelector("[data-name]").textContent = vb.vm_name;
        item.querySelector("[data-progress]").setAttribute("aria-label", "Progress of " + vb.vm_name);
        vmList.appendChild(item);
      }
      return item;
    }
    function show(run) {
      live.hidden = false;
      runId = run.id;
      link.hidden = false;
      link.href = run.url;
      link.textContent = "#" + run.id;
      setBadge(badge, run.status, run.status_display);
      message.textContent = run.message || (run.vm_backups.length ? "" : "No VM to back up yet.");
      run.vm_backups.forEach((vb) => {
        const item = row(vb);
        setBadge(item.querySelector("[data-status]"), vb.status, vb.status_display);
        item.querySelector("[data-phase]").textContent = vb.phase_display;
        item.querySelector("[data-reason]").textContent = vb.error || vb.kind_reason || "";
        const percent = Math.max(0, Math.min(100, Math.round((vb.progress || 0) * 100)));
        const bar = item.querySelector("[data-progress]");
        bar.setAttribute("aria-valuenow", percent);
        bar.querySelector(".progress-bar").style.width = percent + "%";
        bar.querySelector(".progress-text").textContent = percent + " %";
        bar.classList.toggle("progress-ok", vb.status === "success" || vb.status === "warning");
        bar.classList.toggle("progress-danger", vb.status === "failed");
      });
      if (window.Live && !subscription) subscription = Live.subscribe(["run:" + run.id], () => poll());
      if (run.finished) stop();
    }
    function stop() {
      clearInterval(timer);
      timer = null;
      if (subscription) { subscription.close(); subscription = null; }
      live.dataset.finished = "true";
    }
    function poll() {
      if (busy) return;
      busy = true;
      const query = runId ? "" : "?after=" + knownRun;
      getJSON(live.dataset.latestUrl + query).then(({ ok, body }) => {
        if (ok && body.run && (!runId || body.run.id === runId)) show(body.run);
      }).catch(() => {}).finally(() => { busy = false; });
    }
    if (following || runId) {
      // Progress comes over the websocket; the poll finds the new run and covers a dropped socket.
      timer = setInterval(poll, 1500);
      poll();
    }
  }

  // --- retention timeline ------------------------------------------------------------------
  const timelineBox = document.querySelector("[data-retention-timeline]");
  const timelineData = document.getElementById("retention-timeline");
  if (timelineBox && timelineData) {
    const rows = JSON.parse(timelineData.textContent);
    const W = 900, ROW = 30, PAD = { top: 10, right: 16, bottom: 28, left: 150 };
    const H = PAD.top + PAD.bottom + ROW * rows.length;
    const times = rows.flatMap((r) => r.points.map((p) => Date.parse(p.t)));
    const min = Math.min(...times), max = Math.max(...times), span = Math.max(max - min, 3600e3);
    const x = (t) => PAD.left + ((Date.parse(t) - min) / span) * (W - PAD.left - PAD.right);
    const el = (name, attrs, parent) => {
      const node = document.createElementNS(NS, name);
      Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
      parent.appendChild(node);
      return node;
    };
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg timeline-svg", role: "img",
      "aria-label": "Restore points per VM over time: kept and removed" }, timelineBox);
    // Dates on the axis; with less than three days shown, the time of day too.
    const day = (ms) => new Date(ms).toISOString().slice(span < 3 * 86400e3 ? 5 : 0, span < 3 * 86400e3 ? 16 : 10).replace("T", " ");
    for (let i = 0; i <= 4; i++) {
      const t = min + (span * i) / 4, gx = PAD.left + ((W - PAD.left - PAD.right) * i) / 4;
      el("line", { x1: gx, x2: gx, y1: PAD.top, y2: H - PAD.bottom, class: "chart-grid" }, svg);
      el("text", { x: gx, y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "chart-axis" }, svg)
        .textContent = day(t);
    }
    rows.forEach((r, i) => {
      const y = PAD.top + ROW * i + ROW / 2;
      el("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "timeline-lane" }, svg);
      const label = el("text", { x: PAD.left - 10, y: y + 4, "text-anchor": "end", class: "chart-axis timeline-label" }, svg);
      label.textContent = r.vm.length > 20 ? r.vm.slice(0, 19) + "…" : r.vm;
      // Removed first, so a kept point is never hidden under a removed one.
      r.points.slice().sort((a, b) => a.kept - b.kept).forEach((p) => {
        const dot = el("circle", { cx: x(p.t), cy: y, r: p.kept ? 6 : 4.5,
          class: p.kept ? "timeline-kept" : "timeline-removed" }, svg);
        el("title", {}, dot).textContent = r.vm + " " + p.t.slice(0, 16).replace("T", " ") + ": " +
          (p.kept ? "kept (" + p.reasons.join(", ") + ")" : "removed");
      });
    });
  }
})();
