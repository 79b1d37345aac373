/* A data store's verify / garbage collection, live: the store page follows "store:<id>"
 * (backups/store_progress.py) and shows what runs, how far it is and how it ended. */
(function () {
  "use strict";
  const panel = document.querySelector("[data-store-task]");
  if (!panel || !window.Live) return;
  const field = (name) => panel.querySelector('[data-field="' + name + '"]');
  const STATES = { running: ["Running", "info"], finished: ["Finished", "ok"], failed: ["Failed", "danger"] };

  function setProgress(percent, tone) {
    const bar = panel.querySelector("[data-progress]");
    bar.setAttribute("aria-valuenow", percent);
    bar.querySelector(".progress-bar").style.width = percent + "%";
    bar.querySelector(".progress-text").textContent = percent === null ? "" : percent + " %";
    bar.classList.remove("progress-ok", "progress-danger");
    if (tone) bar.classList.add("progress-" + tone);
  }

  Live.subscribe(["store:" + panel.dataset.storeTask], (topic, event) => {
    if (event.type !== "store.task") return;
    panel.hidden = false;
    field("label").textContent = event.label;
    const [word, tone] = STATES[event.state] || STATES.running;
    const badge = field("state");
    badge.textContent = word;
    badge.className = "badge badge-" + tone;
    field("text").textContent = event.text || "";
    if (event.state === "finished") setProgress(100, "ok");
    else if (event.state === "failed") setProgress(100, "danger");
    else if (event.total) setProgress(Math.min(100, Math.round(100 * event.done / event.total)), null);
    else { setProgress(0, null); panel.querySelector(".progress-text").textContent = "working…"; }
  });
})();
