/* VM list: select VMs for the bulk actions (Add to job, Back up now). The form works
 * without this script; it adds "select all", the count and disables the buttons while
 * nothing is selected. */
(function () {
  "use strict";
  var form = document.getElementById("vm-bulk");
  if (!form) return;
  var all = document.querySelector("[data-select-all]");
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input[name="vm"][form="vm-bulk"]'));
  var count = form.querySelector("[data-selected-count]");
  var buttons = form.querySelectorAll("[data-needs-selection]");

  function update() {
    var n = boxes.filter(function (box) { return box.checked; }).length;
    if (count) count.textContent = n ? n + " VM" + (n === 1 ? "" : "s") + " selected" : "No VM selected";
    buttons.forEach(function (button) { button.disabled = n === 0; });
    if (all) {
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  }
  boxes.forEach(function (box) { box.addEventListener("change", update); });
  if (all) all.addEventListener("change", function () {
    boxes.forEach(function (box) { box.checked = all.checked; });
    update();
  });
  update();
})();
