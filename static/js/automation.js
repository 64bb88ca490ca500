/* Automation editor behaviours (CSP-safe, no inline code):
 *   [data-remove-row] removes its closest [data-row] and tells the form something changed, so the
 *   live summary refreshes (htmx listens for "change" on the form).
 */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-remove-row]");
    if (!button) return;
    event.preventDefault();
    var row = button.closest("[data-row]");
    var form = button.closest("form");
    if (row) row.remove();
    if (form) form.dispatchEvent(new Event("change", { bubbles: true }));
  });
})();
