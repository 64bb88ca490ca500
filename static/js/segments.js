/* Segment builder: keep the live count in step with the editor (CSP-safe, no inline code).
 *
 * The count (a request of the #builder form) and editor changes (requests that replace #editor and
 * bring their own count) run side by side. A count that was sent before an editor change finished
 * describes conditions that are no longer on screen, so it is dropped when it arrives late, and a
 * fresh count is asked for: the user may have changed a field outside the editor meanwhile.
 */
(function () {
  "use strict";
  var edits = 0;  // editor requests sent plus editor requests finished

  function builder() { return document.getElementById("builder"); }
  function source(detail) {  // the element that made the request (a swap event's elt is its target)
    return detail.requestConfig ? detail.requestConfig.elt : null;
  }
  function isEdit(detail) {
    return detail.target && detail.target.id === "editor";
  }

  document.addEventListener("htmx:beforeSend", function (event) {
    var form = builder();
    if (!form) return;
    if (source(event.detail) === form) event.detail.xhr.mhEdits = edits;
    else if (isEdit(event.detail)) edits += 1;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (builder() && isEdit(event.detail)) edits += 1;
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = builder();
    if (!form || source(event.detail) !== form) return;
    if (event.detail.xhr.mhEdits !== edits) {
      event.detail.shouldSwap = false;
      form.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });
})();
