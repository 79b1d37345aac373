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

  var topics = [];
  document.querySelectorAll("[data-live-topics]").forEach(function (el) {
    el.getAttribute("data-live-topics").split(/\s+/).forEach(function (t) { if (t && topics.indexOf(t) < 0) topics.push(t); });
  });
  if (!topics.length) return;
  Live.subscribe(topics, function (topic, event) {
    if (event.type === "vm") onVm(event);
    else if (event.type === "pool") onPool(event);
  });
})();
