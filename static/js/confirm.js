/* Marketing Hub — confirm.js. One confirmation dialog for every destructive action (CSP-safe).
 *
 *   Plain forms   <form data-confirm="Delete the segment “X”?" data-confirm-button="Delete"> (or the
 *                 same attributes on its submit button): the submit waits for the dialog; "Cancel",
 *                 Escape or a click beside the dialog keep everything as it was.
 *   htmx          hx-confirm="…" on any htmx element (optionally data-confirm-button="…"): htmx's
 *                 htmx:confirm event opens the same dialog and the request is issued on confirm.
 *
 * The dialog itself is server-rendered in base.html (templates/includes/confirm_dialog.html);
 * without it (or without <dialog> support) the browser's own confirm() asks instead.
 */
(function () {
  "use strict";

  var onConfirm = null;

  function dialog() { return document.getElementById("confirm-dialog"); }

  function ask(question, buttonLabel, then) {
    var dlg = dialog();
    if (!dlg || typeof dlg.showModal !== "function") {
      if (window.confirm(question)) then();
      return;
    }
    var ok = dlg.querySelector("[data-confirm-ok]");
    dlg.querySelector("[data-confirm-message]").textContent = question;
    ok.textContent = buttonLabel || ok.getAttribute("data-default-label") || (window.MH && window.MH.t ? window.MH.t("confirm", "Confirm") : "Confirm");
    onConfirm = then;
    dlg.returnValue = "";
    if (!dlg.open) dlg.showModal();
    var cancel = dlg.querySelector("[data-confirm-cancel]");
    if (cancel) cancel.focus();  // a stray Enter keeps things as they are
  }

  document.addEventListener("close", function (evt) {
    var dlg = evt.target;
    if (!dlg || dlg.id !== "confirm-dialog") return;
    var then = onConfirm;
    onConfirm = null;
    if (dlg.returnValue === "ok" && then) then();
  }, true);  // "close" does not bubble

  // The page may have been re-rendered while the dialog was open (a poll, a filter): the button
  // asked about is gone, so say so rather than act on something the user no longer sees.
  function stillThere(el) {
    if (el && document.body.contains(el)) return true;
    if (window.MH && window.MH.toast) window.MH.toast(window.MH.t ? window.MH.t("page_changed", "The page changed while you were deciding; please try again.")
      : "The page changed while you were deciding; please try again.", "warning");
    return false;
  }

  function attr(el, name) { return el && el.getAttribute ? el.getAttribute(name) : null; }

  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form || form.tagName !== "FORM" || attr(form, "method") === "dialog") return;
    var submitter = evt.submitter || null;
    var question = attr(submitter, "data-confirm") || attr(form, "data-confirm");
    if (!question) return;
    if (form._mhConfirmed) { form._mhConfirmed = false; return; }
    evt.preventDefault();
    evt.stopImmediatePropagation();
    ask(question, attr(submitter, "data-confirm-button") || attr(form, "data-confirm-button"), function () {
      if (!stillThere(form)) return;
      form._mhConfirmed = true;
      if (typeof form.requestSubmit === "function") form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
      else form.submit();
    });
  }, true);

  document.addEventListener("htmx:confirm", function (evt) {
    var detail = evt.detail || {};
    if (!detail.question) return;  // no hx-confirm on this element
    evt.preventDefault();
    ask(detail.question, attr(detail.elt, "data-confirm-button"), function () {
      if (stillThere(detail.elt)) detail.issueRequest(true);
    });
  });

  window.MH = window.MH || {};
  window.MH.confirm = ask;
})();
