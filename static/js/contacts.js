/* Contacts list: show only the bulk fields the chosen action needs; "Export selected" builds the
 * export URL from the ticked rows. CSP-safe: no inline code, hooks by data-attributes. */
(function () {
  "use strict";

  function syncBulkFields(root) {
    var select = (root || document).querySelector("[data-bulk-action]");
    if (!select) return;
    var action = select.value;
    select.form.querySelectorAll("[data-bulk-for]").forEach(function (el) {
      var wanted = el.getAttribute("data-bulk-for").split(" ").indexOf(action) >= 0;
      el.hidden = !wanted;
      el.querySelectorAll && el.querySelectorAll("input, select").forEach(function (input) { input.disabled = !wanted; });
      if (el.matches("input, select")) el.disabled = !wanted;
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-bulk-action]")) syncBulkFields(event.target.form);
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-export-selected]");
    if (!button) return;
    var ids = Array.prototype.map.call(
      button.form.querySelectorAll("input[name=ids]:checked"), function (box) { return box.value; });
    if (!ids.length) return;
    window.location.href = button.getAttribute("data-export-selected") + "?ids=" + ids.join(",");
  });

  function init(root) { syncBulkFields(root); }
  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", function () { init(document); });
})();
