// The score clicked in the email counts once a person is looking: this posts the selected score as
// a provisional answer after the page has been visible for a few seconds (Page Visibility API) or at
// the first interaction, and again when the score changes. "Send my answer" completes it.
(function () {
  "use strict";
  var form = document.querySelector("form[data-provisional]");
  if (!form) {
    return;
  }
  var url = form.getAttribute("data-provisional");
  var delay = parseInt(form.getAttribute("data-visible-ms"), 10) || 3000;
  var posted = null;
  var timer = null;
  var sending = Promise.resolve(); // one post at a time, so the last score chosen is the one kept

  function selected() {
    var checked = form.querySelector("input[name=score]:checked");
    return checked ? checked.value : null;
  }

  function post() {
    var score = selected();
    if (score === null || score === posted) {
      return;
    }
    posted = score;
    var body = new URLSearchParams();
    body.set("score", score);
    body.set("csrf_token", form.elements.csrf_token.value);
    sending = sending
      .then(function () {
        return fetch(url, { method: "POST", body: body, credentials: "same-origin", keepalive: true });
      })
      .then(function (answer) {
        var note = document.getElementById("saved-note");
        if (answer.status === 204 && note) {
          note.hidden = false; // the score counts: say so
        }
      })
      .catch(function () {
        posted = null; // not kept: the next interaction tries again
      });
  }

  function whenVisible() {
    clearTimeout(timer);
    if (document.visibilityState === "visible") {
      timer = setTimeout(post, delay);
    }
  }

  function firstInteraction() {
    document.removeEventListener("pointerdown", firstInteraction, true);
    document.removeEventListener("keydown", firstInteraction, true);
    post();
  }

  document.addEventListener("visibilitychange", whenVisible);
  document.addEventListener("pointerdown", firstInteraction, true);
  document.addEventListener("keydown", firstInteraction, true);
  form.addEventListener("change", function (event) {
    if (event.target.name === "score" && posted !== null) {
      post();
    }
  });
  form.addEventListener("submit", function () {
    clearTimeout(timer);
  });
  whenVisible();
})();
