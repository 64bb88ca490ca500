/* Marketing Hub — app.js. Small page behaviours, plain JS, CSP-safe (no eval, no inline code).
 *
 * Hooks (all by data-attributes, so server templates never need inline script):
 *   Toasts          bottom-right, at most 4 (the oldest goes); server messages in #toasts
 *                   auto-dismiss after 5 s; an HX-Trigger header
 *                   {"toast": {"message": "…", "level": "success|info|warning|error"}} shows one;
 *                   window.MH.toast(message, level) from other static scripts.
 *   Sidebar         [data-sidebar-toggle] opens/closes the nav on narrow screens (body.nav-open).
 *   Dialogs         [data-dialog-open="id"] → showModal(); [data-dialog-close] closes its dialog;
 *                   clicking the backdrop closes (unless the dialog has data-dialog-static);
 *                   HX-Trigger {"closeDialog": true} closes open dialogs, {"openDialog": "id"} opens one.
 *   Select all      input[data-select-all] toggles every input[name=ids] of its form; the form gets
 *                   .has-selection, [data-selected-count] shows the count, [data-requires-selection]
 *                   buttons are disabled while nothing is selected.
 *   Confirm         form[data-confirm="Sure?"] and hx-confirm ask in one dialog: see confirm.js.
 *   Demo logins     [data-fill-login][data-username][data-password] fills the login form.
 *   Progress bar    body.is-loading while any htmx request runs (skip with data-no-progress).
 *   Auto-submit     select[data-autosubmit] submits its form on change; [data-autosubmit-button]
 *                   (the no-JavaScript fallback) is hidden.
 *   Words           window.MH.t(key, englishFallback, {name: value}) reads the page's translated
 *                   strings (#mh-strings, from core/templatetags/mh_ui.py JS_STRINGS; a template
 *                   may also pass its own words in data attributes, e.g. data-copied-label).
 */
(function () {
  "use strict";

  var TOAST_MS = 5000;
  var TOAST_MAX = 4; // shown at once; a fifth pushes out the oldest
  var SVG_OPEN = '<svg class="icon" width="20" height="20" viewBox="0 0 24 24" fill="none" stroke="currentColor" ' +
    'stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">';
  var ICON_PATHS = {
    success: '<path d="M20 6.5 9.5 17 4 11.5"/>',
    error: '<path d="M18 6 6 18M6 6l12 12"/>',
    warning: '<path d="M12 6.5v7"/><path d="M12 17.5h.01"/>',
    info: '<path d="M12 11v6.5"/><path d="M12 6.5h.01"/>',
    close: '<path d="M18 6 6 18M6 6l12 12"/>'
  };

  // The page's words for these scripts (core/templatetags/mh_ui.py JS_STRINGS, in the page's
  // language); the English fallback keeps a page without the block working.
  var strings = null;
  function t(key, fallback, values) {
    if (strings === null) {
      var block = document.getElementById("mh-strings");
      try { strings = block ? JSON.parse(block.textContent) : {}; } catch (e) { strings = {}; }
    }
    var text = strings[key] || fallback;
    if (values) text = text.replace(/%\((\w+)\)s/g, function (all, name) { return name in values ? String(values[name]) : all; });
    return text;
  }

  function icon(name) { return SVG_OPEN + (ICON_PATHS[name] || ICON_PATHS.info) + "</svg>"; }

  function onReady(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  /* ---------------------------------------------------------------- toasts */

  function toastContainer() {
    var box = document.getElementById("toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "toasts";
      box.className = "toasts";
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
      watchToasts(box);
    }
    return box;
  }

  function normaliseLevel(level) {
    level = String(level || "info").toLowerCase();
    if (level === "danger") return "error";
    if (level === "debug") return "info";
    return ["success", "info", "warning", "error"].indexOf(level) >= 0 ? level : "info";
  }

  function dismissToast(el) {
    if (!el || el.classList.contains("is-leaving")) return;
    clearTimeout(el._mhTimer);
    el.classList.add("is-leaving");
    setTimeout(function () { if (el.parentNode) el.parentNode.removeChild(el); }, 220);
  }

  // A modal <dialog> sits in the browser's top layer, above any z-index. While one is open, lift
  // the toast container into the top layer too (as a manual popover) so feedback stays visible.
  function raiseToasts() {
    var box = document.getElementById("toasts");
    if (!box || typeof box.showPopover !== "function") return;
    try {
      if (document.querySelector("dialog[open]")) {
        if (!box.hasAttribute("popover")) box.setAttribute("popover", "manual");
        if (box.matches(":popover-open")) box.hidePopover();
        box.showPopover();
      } else if (box.hasAttribute("popover")) {
        if (box.matches(":popover-open")) box.hidePopover();
        box.removeAttribute("popover");
      }
    } catch (e) { /* popover unsupported or element detached: toasts still show below dialogs */ }
  }

  function armToast(el) {
    if (!el || el._mhArmed || !el.classList || !el.classList.contains("toast")) return;
    el._mhArmed = true;
    raiseToasts();
    var box = el.parentNode;
    if (box) {
      var live = Array.prototype.filter.call(box.querySelectorAll(".toast"), function (t) {
        return !t.classList.contains("is-leaving");
      });
      for (var i = 0; i < live.length - TOAST_MAX; i++) dismissToast(live[i]);
    }
    var remaining = TOAST_MS;
    var startedAt = Date.now();
    el.style.setProperty("--toast-ms", TOAST_MS + "ms");
    function start() {
      startedAt = Date.now();
      el._mhTimer = setTimeout(function () { dismissToast(el); }, remaining);
    }
    // Keep a toast readable while the pointer rests on it.
    el.addEventListener("mouseenter", function () {
      clearTimeout(el._mhTimer);
      remaining = Math.max(800, remaining - (Date.now() - startedAt));
      el.classList.add("is-paused");
    });
    el.addEventListener("mouseleave", function () {
      el.classList.remove("is-paused");
      start();
    });
    start();
  }

  function showToast(message, level) {
    if (message === undefined || message === null || message === "") return null;
    level = normaliseLevel(level);
    var el = document.createElement("div");
    el.className = "toast toast-" + level;
    el.setAttribute("role", level === "error" ? "alert" : "status");
    el.setAttribute("data-toast", "");
    var iconBox = document.createElement("span");
    iconBox.className = "toast-icon";
    iconBox.innerHTML = icon(level);
    var body = document.createElement("div");
    body.className = "toast-body";
    body.textContent = String(message);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("data-toast-close", "");
    close.setAttribute("aria-label", t("dismiss", "Dismiss"));
    close.innerHTML = icon("close");
    el.appendChild(iconBox);
    el.appendChild(body);
    el.appendChild(close);
    toastContainer().appendChild(el);
    armToast(el);
    return el;
  }

  // Toasts can arrive three ways: server-rendered in the page, out-of-band htmx swaps into #toasts,
  // or showToast(); a MutationObserver arms all of them the same way.
  function watchToasts(box) {
    Array.prototype.forEach.call(box.querySelectorAll(".toast"), armToast);
    if (!window.MutationObserver) return;
    new MutationObserver(function (mutations) {
      mutations.forEach(function (m) {
        Array.prototype.forEach.call(m.addedNodes, function (node) {
          if (node.nodeType !== 1) return;
          if (node.classList.contains("toast")) armToast(node);
          else Array.prototype.forEach.call(node.querySelectorAll(".toast"), armToast);
        });
      });
    }).observe(box, { childList: true, subtree: true });
  }

  // HX-Trigger: {"toast": {"message": "Saved", "level": "success"}} | {"toast": "Saved"} |
  // {"toast": [{"message": …}, …]}
  document.addEventListener("toast", function (evt) {
    var detail = evt.detail || {};
    var items = [];
    if (Array.isArray(detail.value)) items = detail.value;
    else if (detail.message !== undefined) items = [detail];
    else if (detail.value !== undefined) items = [detail.value];
    items.forEach(function (item) {
      if (item && typeof item === "object") showToast(item.message, item.level);
      else showToast(item, "info");
    });
  });

  /* ------------------------------------------------------ htmx integration */

  var activeRequests = 0;
  function setLoading() { document.body.classList.toggle("is-loading", activeRequests > 0); }

  document.addEventListener("htmx:beforeSend", function (evt) {
    var detail = evt.detail || {};
    var elt = detail.elt;
    if (elt && elt.closest && elt.closest("[data-no-progress]")) return;
    var xhr = detail.xhr;
    if (!xhr) return;
    activeRequests++;
    setLoading();
    xhr.addEventListener("loadend", function () {
      activeRequests = Math.max(0, activeRequests - 1);
      setLoading();
    });
  });

  // htmx 2 does not swap 4xx/5xx responses; say so instead of failing silently.
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail && evt.detail.xhr;
    if (!xhr) return;
    var trigger = xhr.getResponseHeader("HX-Trigger") || "";
    if (trigger.indexOf("toast") >= 0) return; // the server already explained itself
    var status = xhr.status;
    var text = t("error_status", "Something went wrong (%(status)s). Please try again.", { status: status });
    if (status === 403) text = t("forbidden", "You don't have permission to do that.");
    else if (status === 404) text = t("not_found", "That item no longer exists.");
    else if (status === 429) text = t("too_many", "Too many requests. Wait a moment and try again.");
    else if (status >= 400 && status < 500) text = t("not_accepted", "The request was not accepted (%(status)s).", { status: status });
    showToast(text, "error");
  });

  document.addEventListener("htmx:sendError", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (elt && elt.closest && elt.closest("[data-no-progress]")) return; // a missed poll is retried
    showToast(t("offline", "Could not reach the server. Check your connection and try again."), "error");
  });

  /* --------------------------------------------------------------- sidebar */

  function setNav(open) {
    document.body.classList.toggle("nav-open", open);
    Array.prototype.forEach.call(document.querySelectorAll("[data-sidebar-toggle]"), function (btn) {
      btn.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  /* --------------------------------------------------------------- dialogs */

  function openDialog(id) {
    var dlg = id && document.getElementById(id);
    if (!dlg || typeof dlg.showModal !== "function") return;
    if (!dlg.open) dlg.showModal();
    var focusable = dlg.querySelector("[autofocus], input:not([type=hidden]), select, textarea");
    if (focusable) focusable.focus();
  }

  function closeDialogs(id) {
    var dialogs = id ? [document.getElementById(id)] : document.querySelectorAll("dialog[open]");
    Array.prototype.forEach.call(dialogs, function (dlg) { if (dlg && dlg.open) dlg.close(); });
  }

  document.addEventListener("closeDialog", function (evt) {
    var value = evt.detail && evt.detail.value;
    closeDialogs(typeof value === "string" ? value : null);
  });
  document.addEventListener("openDialog", function (evt) {
    var value = evt.detail && evt.detail.value;
    if (typeof value === "string") openDialog(value);
  });

  /* ------------------------------------------------------------ select all */

  function idBoxes(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name === "ids" && el.type === "checkbox" && !el.disabled;
    });
  }

  function refreshSelection(form) {
    if (!form || !form.elements) return;
    var boxes = idBoxes(form);
    var selected = boxes.filter(function (b) { return b.checked; }).length;
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.hasAttribute && el.hasAttribute("data-select-all")) {
        el.checked = boxes.length > 0 && selected === boxes.length;
        el.indeterminate = selected > 0 && selected < boxes.length;
      }
    });
    var counters = Array.prototype.slice.call(form.querySelectorAll("[data-selected-count]"));
    if (form.id) {
      counters = counters.concat(Array.prototype.slice.call(
        document.querySelectorAll('[data-selected-count="' + form.id + '"]')));
    }
    counters.forEach(function (c) { c.textContent = String(selected); });
    var needSelection = Array.prototype.slice.call(form.querySelectorAll("[data-requires-selection]"));
    if (form.id) {
      needSelection = needSelection.concat(Array.prototype.slice.call(
        document.querySelectorAll('[data-requires-selection][form="' + form.id + '"]')));
    }
    needSelection.forEach(function (b) { b.disabled = selected === 0; });
    form.classList.toggle("has-selection", selected > 0);
  }

  function formOf(el) { return el.form || (el.closest && el.closest("form")); }

  document.addEventListener("change", function (evt) {
    var t = evt.target;
    if (!t || t.type !== "checkbox") return;
    if (t.hasAttribute("data-select-all")) {
      var form = formOf(t);
      if (!form) return;
      idBoxes(form).forEach(function (b) { b.checked = t.checked; });
      refreshSelection(form);
    } else if (t.name === "ids") {
      refreshSelection(formOf(t));
    }
  });

  /* ------------------------------------------------------------ click hooks */

  document.addEventListener("click", function (evt) {
    var t = evt.target;
    if (!t || !t.closest) return;

    var toastClose = t.closest("[data-toast-close]");
    if (toastClose) { dismissToast(toastClose.closest(".toast")); return; }

    var toggle = t.closest("[data-sidebar-toggle]");
    if (toggle) { setNav(!document.body.classList.contains("nav-open")); return; }
    if (document.body.classList.contains("nav-open") && t.closest(".nav-item")) setNav(false);

    var opener = t.closest("[data-dialog-open]");
    if (opener) {
      if (opener.tagName === "A") evt.preventDefault();
      openDialog(opener.getAttribute("data-dialog-open"));
      return;
    }

    var closer = t.closest("[data-dialog-close]");
    if (closer) {
      var dlg = closer.closest("dialog");
      if (dlg) { evt.preventDefault(); dlg.close(); }
      return;
    }

    // A click on the backdrop lands on the <dialog> itself, outside its box.
    if (t.tagName === "DIALOG" && t.open && !t.hasAttribute("data-dialog-static")) {
      var r = t.getBoundingClientRect();
      var inside = evt.clientX >= r.left && evt.clientX <= r.right && evt.clientY >= r.top && evt.clientY <= r.bottom;
      if (!inside && (evt.clientX || evt.clientY)) t.close();
      return;
    }

    var fill = t.closest("[data-fill-login]");
    if (fill) {
      var user = document.getElementById("id_username");
      var pass = document.getElementById("id_password");
      if (user) user.value = fill.getAttribute("data-username") || "";
      if (pass) pass.value = fill.getAttribute("data-password") || "";
      var submit = (user && user.form || document).querySelector("[type=submit]");
      if (submit) submit.focus();
    }

    // Close other open <details class="dropdown"> menus when clicking elsewhere.
    var inDropdown = t.closest("details.dropdown");
    Array.prototype.forEach.call(document.querySelectorAll("details.dropdown[open]"), function (d) {
      if (d !== inDropdown) d.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape") return;
    if (document.body.classList.contains("nav-open")) setNav(false);
    Array.prototype.forEach.call(document.querySelectorAll("details.dropdown[open]"), function (d) {
      d.removeAttribute("open");
    });
  });

  window.addEventListener("resize", function () {
    if (window.innerWidth >= 900 && document.body.classList.contains("nav-open")) setNav(false);
  });

  /* ------------------------------------------------- per-content init (onLoad) */

  function init(root) {
    root = root || document.body;
    if (!root.querySelectorAll) return;
    // selection state of forms inside (or around) freshly swapped content
    var forms = [];
    var own = root.closest ? root.closest("form") : null;
    if (own) forms.push(own);
    Array.prototype.forEach.call(root.querySelectorAll("[data-select-all]"), function (el) {
      var f = formOf(el);
      if (f && forms.indexOf(f) < 0) forms.push(f);
    });
    forms.forEach(refreshSelection);
  }

  window.MH = window.MH || {};
  window.MH.toast = showToast;
  window.MH.openDialog = openDialog;
  window.MH.closeDialogs = closeDialogs;
  window.MH.t = t;

  // htmx fires htmx:load for <body> on DOMContentLoaded and for every swap; register now (this
  // script runs after htmx.min.js, before DOMContentLoaded) so the first call is not missed.
  if (window.htmx && typeof window.htmx.onLoad === "function") window.htmx.onLoad(init);
  else onReady(function () { init(document.body); });

  onReady(function () {
    var box = document.getElementById("toasts");
    if (box) watchToasts(box);
    // The language switcher: a choice applies at once; its button is for a browser without JS.
    Array.prototype.forEach.call(document.querySelectorAll("[data-autosubmit-button]"), function (button) {
      button.hidden = true;
    });
  });

  document.addEventListener("change", function (evt) {
    var select = evt.target.closest ? evt.target.closest("select[data-autosubmit]") : null;
    if (select && select.form) select.form.submit();
  });

  // [data-copy="element-id"] buttons copy that element's text (a new API key, a write key, a
  // signing secret, a snippet) and say so for a moment.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest("[data-copy]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = button.getAttribute("data-copied-label") || t("copied", "Copied");
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });
})();
