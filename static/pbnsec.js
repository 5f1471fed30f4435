// pbnsec: keyboard focus survives htmx swaps. A static file, as the Content-Security-Policy allows no inline script.
//
// When htmx replaces the part of the page that held the focused control (a switch, Approve, a saved setting), the
// browser would drop focus to the top of the page. Here the control is found again in the new content and
// focused: by its id, else by its name and value inside the nearest element with an id; if it is gone (an approved
// request has no Approve button any more) the new content itself is focused; if that is gone too (a deleted row),
// the row that took its place.
(function () {
  "use strict";

  var before = new WeakMap(); // per request: where the focus was when it started

  function focusable(el) {
    return el && el.isConnected && !el.disabled && el.getClientRects().length > 0;
  }

  function describe(el) {
    if (!el || el === document.body || el === document.documentElement) return null;
    var anchor = el.parentElement ? el.parentElement.closest("[id]") : null;
    var selector = el.tagName.toLowerCase();
    ["name", "value", "type", "role"].forEach(function (attr) {
      var v = el.getAttribute(attr);
      if (v !== null) selector += "[" + attr + '="' + CSS.escape(v) + '"]';
    });
    // A control that goes away with its swap (an inline edit's Save) may name where the focus goes next.
    return {id: el.getAttribute("data-focus-after") || el.id || null, anchor: anchor ? anchor.id : null, selector: selector};
  }

  function focusOn(el) {
    if (!el.matches("a[href], button, input, select, textarea, summary, [tabindex]")) el.setAttribute("tabindex", "-1");
    el.focus({preventScroll: false});
  }

  function firstControl(root) {
    var found = root.querySelectorAll("a[href], button, input:not([type=hidden]), select, textarea, summary");
    for (var i = 0; i < found.length; i++) if (focusable(found[i])) return found[i];
    return null;
  }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var target = evt.detail.target, active = document.activeElement;
    // Only the swap that replaces the focused control looks after it (not, say, a status refreshed meanwhile).
    if (!target || !active || !(target.contains(active) || evt.detail.elt === active)) return;
    before.set(evt.detail.xhr, {
      was: describe(document.activeElement),
      targetId: target && target.id,
      // A refusal row of the target's row, and the row that takes a deleted row's place.
      next: target && target.nextElementSibling && !target.nextElementSibling.classList.contains("refusal")
        ? target.nextElementSibling : target && target.nextElementSibling && target.nextElementSibling.nextElementSibling,
      previous: target && target.previousElementSibling
    });
  });

  // A row's refusal is a row of its own below it: it goes when the row is replaced (the new row brings its own).
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || !target.id) return;
    document.querySelectorAll('tr.refusal[data-for="' + CSS.escape(target.id) + '"]').forEach(function (row) {
      row.remove();
    });
  });

  function restore(seen) {
    var active = document.activeElement;
    if (!seen || !seen.was) return;
    if (active && active !== document.body && active.isConnected) return; // focus is still somewhere (or autofocus took it)
    var was = seen.was, el = null;
    if (was.id) el = document.getElementById(was.id);
    if (!focusable(el) && was.anchor) {
      var anchor = document.getElementById(was.anchor);
      if (anchor) el = anchor.querySelector(was.selector);
      // The control is gone but the element around it came back (a decided request's row, redrawn by the table
      // refreshing itself): that element, rather than the first control of everything swapped.
      if (!focusable(el) && focusable(anchor)) el = anchor;
    }
    if (!focusable(el) && seen.targetId) {
      var replaced = document.getElementById(seen.targetId);
      if (replaced) el = firstControl(replaced) || replaced;
    }
    if (!el || !el.isConnected) {
      var neighbour = [seen.next, seen.previous].filter(function (n) { return n && n.isConnected; })[0];
      if (neighbour) el = firstControl(neighbour) || neighbour;
    }
    if (el && el.isConnected) focusOn(el);
  }

  document.addEventListener("htmx:afterSettle", function (evt) { restore(before.get(evt.detail.xhr)); });
  // A target removed by its swap (a deleted row) is detached: its afterSettle never reaches the document.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var seen = before.get(evt.detail.xhr), target = evt.detail.target, active = document.activeElement;
    // The focus may have moved while the request was out (a table refreshing itself after an approval, whose
    // row took the focus meanwhile): what is focused now, inside what is swapped, is what to find again.
    if (seen && target && active && active !== document.body && target.contains(active)) seen.was = describe(active);
    window.setTimeout(function () { restore(seen); }, 100);
  });
})();
