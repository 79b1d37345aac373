/* Restore wizard enhancements; every step also works without JavaScript.
 *  - step 2: one calendar month at a time (previous / next), a chosen day's points highlighted;
 *  - step 3: the space each SR would receive is recomputed as disks are mapped, and the
 *    "Use this pool" button stands out once another pool is picked;
 *  - step 4: the "replace the original" option only shows with "keep the identity". */
(function () {
  "use strict";

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

  // --- step 2: calendar ---------------------------------------------------------------------
  const calendar = document.querySelector("[data-calendar]");
  if (calendar) {
    const months = Array.from(calendar.querySelectorAll(".calendar-month"));
    let shown = 0;
    function show(index) {
      shown = Math.max(0, Math.min(months.length - 1, index));
      months.forEach((month, i) => {
        month.hidden = i !== shown;
        // Months are listed newest first: "previous" goes to an older month.
        const prev = month.querySelector("[data-calendar-prev]");
        const next = month.querySelector("[data-calendar-next]");
        prev.hidden = next.hidden = false;
        prev.disabled = i === months.length - 1;
        next.disabled = i === 0;
      });
    }
    calendar.addEventListener("click", (event) => {
      if (event.target.closest("[data-calendar-prev]")) { show(shown + 1); months[shown].querySelector("[data-calendar-next]").focus(); }
      else if (event.target.closest("[data-calendar-next]")) { show(shown - 1); months[shown].querySelector("[data-calendar-prev]").focus(); }
      const day = event.target.closest("[data-day]");
      if (day) selectDay(day.dataset.day);
    });
    function selectDay(date) {
      document.querySelectorAll("[data-day]").forEach((el) => el.classList.toggle("is-selected", el.dataset.day === date));
      document.querySelectorAll("[data-day-group]").forEach((el) => el.classList.toggle("is-selected", el.dataset.dayGroup === date));
      const first = document.querySelector('[data-day-group="' + date + '"] input[type="radio"]');
      if (first) window.setTimeout(() => first.focus({ preventScroll: true }), 0);
    }
    if (months.length) show(0);
    // Open on the month of the chosen point, if any.
    const checked = document.querySelector('[data-point-form] input[name="point"]:checked');
    if (checked) {
      const date = checked.closest("[data-day-group]").dataset.dayGroup;
      const index = months.findIndex((m) => m.querySelector('[data-day="' + date + '"]'));
      if (index >= 0) show(index);
      document.querySelectorAll('[data-day="' + date + '"]').forEach((el) => el.classList.add("is-selected"));
    }
  }

  // --- step 3: storage needs ------------------------------------------------------------------
  const target = document.querySelector("[data-target-form]");
  if (target) {
    const diskSelects = Array.from(target.querySelectorAll("select[data-disk-size]"));
    function recompute() {
      const needed = {};
      diskSelects.forEach((select) => {
        needed[select.value] = (needed[select.value] || 0) + Number(select.dataset.diskSize);
      });
      target.querySelectorAll("[data-sr-table] tr[data-sr]").forEach((row) => {
        const need = needed[row.dataset.sr] || 0;
        const short = need > Number(row.dataset.free);
        row.querySelector("[data-needed]").textContent = fileSize(need);
        row.querySelector("[data-short-badge]").hidden = !short;
        row.classList.toggle("is-short", short);
      });
    }
    diskSelects.forEach((select) => select.addEventListener("change", recompute));

    const pool = target.querySelector("#id_target_pool");
    const change = target.querySelector("[data-change-pool]");
    if (pool && change) {
      const initial = pool.value;
      pool.addEventListener("change", () => {
        const changed = pool.value !== initial;
        change.classList.toggle("button-primary", changed);
        target.classList.toggle("pool-changed", changed);
      });
    }
  }

  // --- step 4: replace only with keep -------------------------------------------------------
  const options = document.querySelector("[data-options-form]");
  if (options) {
    const box = options.querySelector("[data-replace-box]");
    const replace = box && box.querySelector('input[type="checkbox"]');
    function sync() {
      const keep = options.querySelector('input[name="identity"][value="keep"]').checked;
      box.hidden = !keep && !box.classList.contains("has-error");
      if (!keep && replace) replace.checked = false;
    }
    options.querySelectorAll('input[name="identity"]').forEach((radio) => radio.addEventListener("change", sync));
    if (box) sync();
  }

  // "Start restore" queues a job: one click, one restore.
  document.querySelectorAll("[data-start-form]").forEach((form) => {
    form.addEventListener("submit", () => {
      const button = form.querySelector("[data-start-button]");
      window.setTimeout(() => { button.disabled = true; button.textContent = "Starting…"; }, 0);
    });
  });

  // Move focus to the first error so keyboard and screen-reader users land on it.
  // In a group of radio buttons that is the chosen one (or the first).
  const firstError = document.querySelector('#review-problems, #form-errors, .wizard-form .errors, .wizard-card .errors, .wizard-form [aria-invalid="true"]');
  if (firstError) {
    let focusable = firstError;
    if (!firstError.matches("input, select, textarea, [tabindex]")) {
      const group = firstError.closest("fieldset, .field, form") || firstError;
      focusable = group.querySelector("input:checked:not([type=hidden])") || group.querySelector("input:not([type=hidden]), select, textarea");
    }
    if (focusable) focusable.focus();
  }
})();
