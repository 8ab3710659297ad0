// Shared WebSocket client: reconnects, shows the live dot, hands events to a callback.
window.hotlineLive = function (onEvent) {
  var proto = location.protocol === "https:" ? "wss://" : "ws://";
  var dot = document.getElementById("live");
  function connect() {
    var ws = new WebSocket(proto + location.host + "/ws");
    ws.onopen = function () { if (dot) dot.classList.remove("off"); };
    ws.onclose = function (e) {
      if (e.code === 4401) {  // the session ended (logout elsewhere, revoked, expired): log in again
        location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
        return;
      }
      if (dot) dot.classList.add("off");
      setTimeout(connect, 2000);
    };
    ws.onmessage = function (m) { try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  }
  connect();
};
window.hotlineApi = function (method, url, body) {
  return fetch(url, {
    method: method, credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Requested-With": "fetch"},
    body: body === undefined ? undefined : JSON.stringify(body)
  }).then(function (r) { return r.json().then(function (j) { return {status: r.status, body: j}; }); });
};
