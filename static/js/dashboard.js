/* Dashboard: draw the charts, and refresh the figures when a live event says something
 * changed (debounced: a burst of VM events causes one fetch). */
(function () {
  "use strict";
  const root = document.querySelector("[data-dashboard]");
  if (!root) return;
  const updated = document.querySelector("[data-updated]");

  document.querySelectorAll("[data-chart]").forEach((el) => {
    const data = JSON.parse(el.querySelector("script[type='application/json']").textContent);
    Charts.bar(el, data, { label: el.dataset.chartLabel });
  });

  function apply(summary) {
    document.querySelectorAll("[data-field]").forEach((el) => {
      const value = summary[el.dataset.field];
      if (value !== undefined && value !== null) el.textContent = value;
    });
    document.querySelectorAll("[data-show-if]").forEach((el) => {
      el.hidden = !summary[el.dataset.showIf];
    });
    const alerts = document.querySelector("[data-alerts]");
    if (alerts && summary.alerts_html !== undefined) alerts.innerHTML = summary.alerts_html;
    const running = document.querySelector("[data-running]");
    if (running && summary.running_html !== undefined) running.innerHTML = summary.running_html;
    followRuns(summary.running_runs || []);
    stamp();
  }

  function stamp() {
    if (updated) updated.textContent = "Updated " + new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  stamp();

  let timer = null;
  function refresh() {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fetch(root.dataset.summaryUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : null))
        .then((summary) => { if (summary) apply(summary); })
        .catch(() => {});
    }, 500);
  }

  // Progress is published per run ("run:<id>"): follow the runs in progress while they last.
  const followed = new Map();
  function followRuns(runIds) {
    if (!window.Live) return;
    const wanted = new Set(runIds.map((id) => "run:" + id));
    followed.forEach((subscription, topic) => {
      if (!wanted.has(topic)) { subscription.close(); followed.delete(topic); }
    });
    wanted.forEach((topic) => { if (!followed.has(topic)) followed.set(topic, Live.subscribe([topic], refresh)); });
  }

  if (window.Live) {
    Live.subscribe(["dashboard", "pools", "vms"], refresh);
    const initial = (document.querySelector("[data-running]") || {}).dataset;
    followRuns(initial && initial.runningRuns ? initial.runningRuns.split(",").filter(Boolean) : []);
  }
})();
