// Live parts of a dashboard page: every element with `data-live` (and an id) is replaced by the
// same element of a fresh copy of the page, every few seconds, while the tab is visible.
// No dependency; without JavaScript the pages are the same, only static.
(function () {
  "use strict";
  var seconds = Number(document.body.getAttribute("data-refresh-seconds")) || 5;

  function refresh() {
    if (document.hidden || !document.querySelector("[data-live]")) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live-Refresh": "1" } })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (text === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (element) {
          var update = element.id ? fresh.getElementById(element.id) : null;
          if (update !== null && update.innerHTML !== element.innerHTML) {
            element.innerHTML = update.innerHTML;
          }
        });
      })
      .catch(function () {
        // the server is away for a moment: the next tick tries again
      });
  }

  window.setInterval(refresh, seconds * 1000);
})();
