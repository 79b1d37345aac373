/* The pool page's clean-up card (templates/backups/pool_detail.html) follows a pass live:
 * backups/pool_cleanup.py publishes "pool.cleanup" on the pool's topic when it starts and ends. */
(function () {
  "use strict";
  var card = document.querySelector("[data-cleanup][data-cleanup-pool]");
  if (!window.Live || !card) return;

  Live.subscribe(["pool:" + card.getAttribute("data-cleanup-pool")], function (topic, event) {
    if (event.type !== "pool.cleanup") return;
    var last = card.querySelector("[data-cleanup-last]");
    var badge = card.querySelector("[data-cleanup-status]");
    var never = card.querySelector("[data-cleanup-never]");
    if (never) never.hidden = true;
    last.hidden = false;
    badge.textContent = event.status_label;
    badge.className = "badge badge-" + event.badge;
    card.querySelector("[data-cleanup-summary]").textContent = event.summary;
    card.querySelector("[data-cleanup-reload]").hidden = !event.listed;
  });
})();
