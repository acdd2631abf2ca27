// Ferry dashboard: live fragments over Server-Sent Events, the live log, running durations,
// and confirmation of destructive buttons. No framework, no build step.
"use strict";

(function () {
  function duration(seconds) {
    if (seconds < 60) return seconds.toFixed(1) + "s";
    var m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
    if (m < 60) return m + "m " + (s < 10 ? "0" : "") + s + "s";
    var h = Math.floor(m / 60); m = m % 60;
    return h + "h " + (m < 10 ? "0" : "") + m + "m";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) el.textContent = duration(Math.max(0, (now - since) / 1000));
    });
  }

  function listen(url, handlers) {
    var source = new EventSource(url);
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (event) { handlers[name](JSON.parse(event.data), source); });
    });
    source.addEventListener("open", function () {
      document.documentElement.setAttribute("data-live-ready", "1");
    });
    source.onerror = function () {
      // closed for good (401: the session ended): the page itself redirects to sign-in
      if (source.readyState === EventSource.CLOSED) setTimeout(function () { location.reload(); }, 3000);
    };
    return source;
  }

  function swap(frag) {
    var target = document.getElementById(frag.id);
    if (!target) return;
    if (frag.key !== undefined) {  // the log panel: only when it follows another task
      if (target.getAttribute("data-key") === frag.key) return;
      if (logSource) { logSource.close(); logSource = null; }
      target.setAttribute("data-key", frag.key);
      target.innerHTML = frag.html;
      attachLog();
      return;
    }
    var focused = document.activeElement && target.contains(document.activeElement)
      ? document.activeElement.getAttribute("aria-label") : null;
    target.innerHTML = frag.html;
    if (focused) {  // keep the keyboard where it was
      var again = target.querySelector('[aria-label="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
    tick();
  }

  function follow(log) {
    var box = document.getElementById("follow");
    if (!box || box.checked) log.scrollTop = log.scrollHeight;
  }

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  var logSource = null;

  function attachLog() {
    var log = document.querySelector("[data-log]");
    if (!log) return;
    follow(log);
    logSource = listen(log.getAttribute("data-log"), {
      log: function (data) { log.insertAdjacentHTML("beforeend", data.html); follow(log); },
      end: function (data, source) { source.close(); log.setAttribute("data-ended", data.status); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      listen(el.getAttribute("data-live"), { frag: swap });
    });
    attachLog();
    var box = document.getElementById("follow");
    if (box) box.addEventListener("change", function () {
      var log = document.querySelector("[data-log]");
      if (log) follow(log);
    });
    tick();
    setInterval(tick, 1000);
  });
})();
