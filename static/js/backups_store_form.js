/* Add data store: show the fields of the chosen medium, and a passphrase strength hint
 * (a rough estimate from length and character variety; the server enforces the minimum). */
(function () {
  "use strict";
  const form = document.querySelector("[data-store-form]");
  if (!form) return;

  function showKind() {
    const checked = form.querySelector('input[name="kind"]:checked');
    const kind = checked ? checked.value : "local";
    form.querySelectorAll("[data-kind-section]").forEach((el) => { el.hidden = el.dataset.kindSection !== kind; });
  }
  form.querySelectorAll('input[name="kind"]').forEach((input) => input.addEventListener("change", showKind));
  showKind();

  const encrypted = form.querySelector('input[name="encrypted"]');
  const section = form.querySelector("[data-encryption-section]");
  function showEncryption() { if (encrypted && section) section.hidden = !encrypted.checked; }
  if (encrypted) encrypted.addEventListener("change", showEncryption);
  showEncryption();

  const passphrase = form.querySelector('input[name="passphrase"]');
  const meter = form.querySelector("[data-strength]");
  function estimateBits(text) {
    let pool = 0;
    if (/[a-z]/.test(text)) pool += 26;
    if (/[A-Z]/.test(text)) pool += 26;
    if (/[0-9]/.test(text)) pool += 10;
    if (/[^a-zA-Z0-9]/.test(text)) pool += 33;
    const distinct = new Set(text).size;
    return Math.round(Math.min(text.length, distinct * 2) * Math.log2(Math.max(pool, 1)));
  }
  function rate() {
    if (!passphrase || !meter) return;
    const text = passphrase.value;
    const bits = estimateBits(text);
    let level = 0, label = "Enter a passphrase";
    if (text.length) {
      if (text.length < 12) { level = 1; label = "Too short: at least 12 characters"; }
      else if (bits < 60) { level = 2; label = "Fair: add another word"; }
      else if (bits < 90) { level = 3; label = "Strong"; }
      else { level = 4; label = "Very strong"; }
    }
    meter.dataset.level = level;
    meter.querySelector(".strength-fill").style.width = (level * 25) + "%";
    meter.querySelector(".strength-text").textContent = label + (text.length ? " (about " + bits + " bits)" : "");
  }
  if (passphrase) passphrase.addEventListener("input", rate);
  rate();
})();
