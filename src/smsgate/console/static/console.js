// smsgate console: live updates over server-sent events, and confirmations. Every page works
// without this file; it only saves reloading.
"use strict";
(function () {
  // Elements with data-live="URL" are replaced by each event the URL streams.
  document.querySelectorAll("[data-live]").forEach(function (box) {
    if (!window.EventSource) return;
    var source = new EventSource(box.getAttribute("data-live"));
    var update = function (event) {
      if (box.contains(document.activeElement) && document.activeElement !== document.body) {
        return; // do not pull a focused control out from under the keyboard
      }
      box.innerHTML = event.data;
      box.setAttribute("data-updated", String(Date.now()));
    };
    source.addEventListener("overview", update);
    source.addEventListener("timeline", update);
    window.addEventListener("pagehide", function () { source.close(); });
  });
  // Buttons with data-confirm ask first.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  // A shown-once key is selected for copying.
  document.querySelectorAll("[data-select]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
})();
