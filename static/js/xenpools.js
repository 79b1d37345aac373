/* Live updates for the pool and VM pages: rows change in place when the event follower
 * publishes a change ("vms" and "pool:<id>" / "pools" topics, see xenpools/broadcast.py). */
(function () {
  "use strict";
  if (!window.Live) return;

  function setBadge(el, text, badge) {
    if (!el) return;
    el.textContent = text;
    el.className = el.className.replace(/\bbadge-\w+/g, "").trim() + " badge-" + badge;
  }

  function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }

  function onVm(event) {
    document.querySelectorAll('[data-vm-id="' + event.id + '"]').forEach(function (row) {
      setBadge(field(row, "power_state"), event.power_label, event.power_badge);
      var host = field(row, "host");
      if (host) host.textContent = event.host || (row.tagName === "TR" ? "" : "not running");
      if (event.removed) row.classList.add("removed");
      row.classList.add("live-updated");
      setTimeout(function () { row.classList.remove("live-updated"); }, 1500);
    });
  }

  function onPool(event) {
    document.querySelectorAll('[data-pool-id="' + event.id + '"]').forEach(function (root) {
      setBadge(field(root, "health") || document.querySelector('h1 [data-field="health"]'), event.health_label, event.health_badge);
      var count = field(root, "vm_count"); if (count) count.textContent = event.vm_count;
      var running = field(root, "running"); if (running) running.textContent = event.running;
      var error = field(root, "last_error");
      if (error) { error.textContent = event.last_error; error.hidden = !event.last_error; }
      (event.hosts || []).forEach(function (h) {
        var row = root.querySelector('[data-host-id="' + h.id + '"]');
        if (!row) return;
        setBadge(field(row, "live"), h.live ? "Live" : "Down", h.live ? "ok" : "danger");
        setBadge(field(row, "enabled"), h.enabled ? "Enabled" : "Disabled", h.enabled ? "ok" : "warn");
        var master = field(row, "master"); if (master) master.hidden = !h.is_master;
      });
      (event.srs || []).forEach(function (s) {
        var row = root.querySelector('[data-sr-id="' + s.id + '"]');
        if (!row) return;
        var bar = field(row, "usage"); if (bar) bar.style.width = s.usage_percent + "%";
        var pct = field(row, "usage_percent"); if (pct) pct.textContent = s.usage_percent;
        var free = field(row, "free"); if (free) free.textContent = s.free;
      });
    });
  }

  /* A sync asked for by a person, run on a worker (xenpools/sync.py): phase and objects read
   * while it runs, then its outcome in plain words. */
  var syncFinishedSeen = false;

  function onSync(event, catchingUp) {
    var card = document.querySelector('[data-pool-id="' + event.id + '"] [data-sync]');
    if (!card) return;
    if (catchingUp && syncFinishedSeen && event.state !== "idle") return;   // a live event was newer
    if (event.state === "idle" && !catchingUp) syncFinishedSeen = true;
    var running = card.querySelector("[data-sync-running]");
    var result = card.querySelector("[data-sync-result]");
    var never = card.querySelector("[data-sync-never]");
    if (never) never.hidden = true;
    if (event.state !== "idle") {
      running.hidden = false;
      card.querySelector("[data-sync-state]").textContent = event.state_label;
      card.querySelector("[data-sync-phase]").textContent = event.phase_label;
      Object.keys(event.counts || {}).forEach(function (name) {
        var el = card.querySelector('[data-count="' + name + '"]');
        if (el) el.textContent = event.counts[name];
      });
      return;
    }
    running.hidden = true;
    if (event.ok === null) return;
    result.hidden = false;
    var outcome = card.querySelector("[data-sync-outcome]");
    outcome.className = "alert " + (event.ok ? "alert-success" : "alert-danger");
    card.querySelector("[data-sync-message]").textContent = event.outcome;
    var finished = card.querySelector("[data-sync-finished]");
    if (finished) finished.textContent = "just now";
    var reload = card.querySelector("[data-sync-reload]");
    if (reload) reload.hidden = !event.ok;
  }

  /* Events published before this page's subscription was active (a sync that started while
   * the page loaded) are not replayed: once live, ask for the sync's state once. */
  function catchUpSync() {
    var card = document.querySelector("[data-sync][data-sync-status-url]");
    if (!card || !card.querySelector("[data-sync-running]") || card.querySelector("[data-sync-running]").hidden) return;
    fetch(card.getAttribute("data-sync-status-url"), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) { if (state) onSync(state, true); })
      .catch(function () {});
  }
  var indicator = document.querySelector("[data-live-state]");
  if (indicator && document.querySelector("[data-sync]")) {
    new MutationObserver(function () {
      if (indicator.getAttribute("data-live-state") === "live") window.setTimeout(catchUpSync, 300);
    }).observe(indicator, {attributes: true, attributeFilter: ["data-live-state"]});
  }

  var topics = [];
  document.querySelectorAll("[data-live-topics]").forEach(function (el) {
    el.getAttribute("data-live-topics").split(/\s+/).forEach(function (t) { if (t && topics.indexOf(t) < 0) topics.push(t); });
  });
  if (!topics.length) return;
  Live.subscribe(topics, function (topic, event) {
    if (event.type === "vm") onVm(event);
    else if (event.type === "pool") onPool(event);
    else if (event.type === "pool.sync") onSync(event);
  });
})();
