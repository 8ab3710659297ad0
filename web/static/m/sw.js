// Service worker of 城管通 (/m/): keeps the app shell so the app opens with no signal.
// API calls are never touched here: the page sends them itself and queues what fails
// (IndexedDB outbox in app.js), so "offline" means the same thing to the page and the network.
var CACHE = "field-shell-v3";
var SHELL = ["/m/", "/static/m/app.js", "/static/m/app.css", "/static/picker.js", "/static/picker.css",
             "/m/manifest.webmanifest", "/static/m/icon-192.png", "/static/m/icon-512.png",
             "/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css"];

self.addEventListener("install", function (e) {
  e.waitUntil(caches.open(CACHE).then(function (c) { return c.addAll(SHELL); }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (e) {
  e.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) { return k !== CACHE; }).map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (e) {
  var url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== self.location.origin || SHELL.indexOf(url.pathname) < 0) return;
  // Network first (a new version is picked up at once), the cached copy when there is no network.
  e.respondWith(fetch(e.request).then(function (resp) {
    if (resp.ok && !resp.redirected) {
      var copy = resp.clone();
      caches.open(CACHE).then(function (c) { c.put(e.request, copy); });
    }
    return resp;
  }).catch(function () {
    return caches.match(e.request);
  }));
});
