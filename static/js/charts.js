/* Small SVG charts from JSON, no library.
 *
 *   Charts.bar(element, [{label: "14:00", value: 3}, ...], {label: "Runs per hour"})
 *   (a bar may carry tone: "ok" | "warn" | "danger" | "muted", the badge colours)
 *   Charts.line(element, [{label: "Mon", value: 1.5}, ...], {label: "Throughput", unit: "MB/s"})
 *
 * The SVG scales to its container; each bar / point carries a <title> for a tooltip and
 * the chart has role="img" with a label, plus a visually hidden data table for screen readers.
 */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 220, PAD = { top: 12, right: 12, bottom: 28, left: 40 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (parent) parent.appendChild(node);
    return node;
  }

  // Axis top and step: 4 steps of 1, 2, 2.5 or 5 x 10^n; whole numbers for counts.
  function niceScale(value, integers) {
    if (value <= 0) return { max: integers ? 4 : 1, step: integers ? 1 : 0.25 };
    const raw = value / 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const factors = integers ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
    let step = factors.map((f) => f * magnitude).find((s) => s >= raw);
    if (integers) step = Math.max(1, Math.round(step));
    return { max: step * 4, step };
  }

  function frame(container, data, options) {
    container.querySelectorAll("svg.chart-svg, table.chart-table").forEach((n) => n.remove());
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img",
      "aria-label": options.label || "Chart", preserveAspectRatio: "none" });
    container.appendChild(svg);
    const values = data.map((d) => Number(d.value) || 0);
    const { max } = niceScale(Math.max(0, ...values), values.every(Number.isInteger));
    const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
    for (let i = 0; i <= 4; i++) {
      const y = PAD.top + plotH - (plotH * i) / 4;
      el("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "chart-grid" }, svg);
      const t = el("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "chart-axis" }, svg);
      t.textContent = formatNumber((max * i) / 4);
    }
    const every = Math.max(1, Math.ceil(data.length / 8));
    data.forEach((d, i) => {
      if (i % every) return;
      const x = PAD.left + (plotW * (i + 0.5)) / data.length;
      const t = el("text", { x, y: H - 8, "text-anchor": "middle", class: "chart-axis" }, svg);
      t.textContent = d.label;
    });
    // Screen-reader table with the same numbers.
    const table = document.createElement("table");
    table.className = "chart-table visually-hidden";
    table.innerHTML = "<caption></caption><tbody></tbody>";
    table.querySelector("caption").textContent = options.label || "Chart data";
    data.forEach((d) => {
      const row = table.tBodies[0].insertRow();
      row.insertCell().textContent = d.label;
      row.insertCell().textContent = d.value + (options.unit ? " " + options.unit : "");
    });
    container.appendChild(table);
    return { svg, max, plotW, plotH };
  }

  function formatNumber(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (n >= 1e3) return (n / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    return Number.isInteger(n) ? String(n) : n.toFixed(1);
  }

  function bar(container, data, options = {}) {
    const { svg, max, plotW, plotH } = frame(container, data, options);
    const slot = plotW / Math.max(1, data.length);
    data.forEach((d, i) => {
      const h = (plotH * (Number(d.value) || 0)) / max;
      const rect = el("rect", { x: PAD.left + slot * i + slot * 0.15, y: PAD.top + plotH - h,
        width: slot * 0.7, height: Math.max(h, 0), rx: 2, class: "chart-bar" + (d.tone ? " chart-bar-" + d.tone : "") }, svg);
      el("title", {}, rect).textContent = `${d.label}: ${d.value}${options.unit ? " " + options.unit : ""}`;
    });
  }

  function line(container, data, options = {}) {
    const { svg, max, plotW, plotH } = frame(container, data, options);
    const points = data.map((d, i) => [PAD.left + (plotW * (i + 0.5)) / data.length,
      PAD.top + plotH - (plotH * (Number(d.value) || 0)) / max]);
    if (points.length) {
      el("path", { d: "M" + points.map((p) => p.join(",")).join("L"), class: "chart-line" }, svg);
      points.forEach((p, i) => {
        const dot = el("circle", { cx: p[0], cy: p[1], r: 3, class: "chart-dot" }, svg);
        el("title", {}, dot).textContent = `${data[i].label}: ${data[i].value}${options.unit ? " " + options.unit : ""}`;
      });
    }
  }

  window.Charts = { bar, line };
})();
