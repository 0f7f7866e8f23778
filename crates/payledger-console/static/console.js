// payledger console: progressive enhancement only. Every page works without this file.
// Same origin, no inline script (the Content-Security-Policy forbids it).
(function () {
  "use strict";
  // Forms that change money or switches ask once more before posting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
})();
