/* Loyalty tier editor: "Add tier" clones the formset's empty row (no inline scripts: CSP). */
(function () {
  "use strict";
  function addTier(button) {
    var form = button.closest("form");
    var total = form.querySelector("input[name='tiers-TOTAL_FORMS']");
    var template = form.querySelector("template[data-tier-template]");
    var rows = form.querySelector("[data-tier-rows]");
    if (!total || !template || !rows) return;
    var index = parseInt(total.value, 10) || 0;
    var html = template.innerHTML.replace(/__prefix__/g, String(index));
    rows.insertAdjacentHTML("beforeend", html);
    total.value = String(index + 1);
    var first = rows.lastElementChild && rows.lastElementChild.querySelector("input[name$='-name']");
    if (first) first.focus();
    document.body.dispatchEvent(new CustomEvent("tiers-changed"));
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-add-tier]");
    if (button) { event.preventDefault(); addTier(button); }
  });
})();
