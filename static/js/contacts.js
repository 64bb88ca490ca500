/* Contacts list: show only the bulk fields the chosen action needs. CSP-safe: no inline code,
 * hooks by data-attributes. */
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

  function init(root) { syncBulkFields(root); }
  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", function () { init(document); });
})();
