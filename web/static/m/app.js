// 城管通 — the inspectors' phone app (/m/). My tasks (核实/核查), a task's form, 上报, and the
// outbox: every submission is first saved in IndexedDB with its own idempotency key, the
// photos, and the position and time of the moment it was made; it is sent when the phone
// is online and removed only once the server has answered, so a lost answer is sent again
// and the server (same key) gives back the same case instead of filing a second one.
(function () {
  "use strict";
  var DB_NAME = "hotline-field", OUTBOX = "outbox", SENT = "sent", CACHE = "cache";
  var body = document.body;
  var INTERVAL_S = Number(body.dataset.positionInterval) || 60;
  // pin: a position set by a tap on the report form's map (else the GPS fix is sent);
  // categories: the directory cached on the phone, searched here when there is no signal.
  var state = {position: null, pin: null, tasks: [], task: null, flushing: false, dutyTimer: null,
               categories: [], grid: null, map: null};

  // ---------------------------------------------------------------- IndexedDB
  var dbPromise = new Promise(function (resolve, reject) {
    var req = indexedDB.open(DB_NAME, 2);
    req.onupgradeneeded = function () {   // v1: outbox, sent; v2: cache (categories, grid)
      [OUTBOX, SENT, CACHE].forEach(function (name) {
        if (!req.result.objectStoreNames.contains(name)) req.result.createObjectStore(name, {keyPath: "key"});
      });
    };
    req.onsuccess = function () { resolve(req.result); };
    req.onerror = function () { reject(req.error); };
  });
  function store(name, mode, fn) {
    return dbPromise.then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction(name, mode), result;
        var r = fn(t.objectStore(name));
        if (r) r.onsuccess = function () { result = r.result; };
        t.oncomplete = function () { resolve(result); };
        t.onerror = function () { reject(t.error); };
        t.onabort = function () { reject(t.error); };
      });
    });
  }
  function all(name) {
    return store(name, "readonly", function (s) { return s.getAll(); }).then(function (items) {
      return (items || []).sort(function (a, b) { return a.created - b.created; });
    });
  }
  function put(name, item) { return store(name, "readwrite", function (s) { return s.put(item); }); }
  function del(name, key) { return store(name, "readwrite", function (s) { return s.delete(key); }); }
  function cached(key) {
    return store(CACHE, "readonly", function (s) { return s.get(key); }).then(function (row) { return row ? row.value : null; });
  }

  // ---------------------------------------------------------------- helpers
  function $(sel, root) { return (root || document).querySelector(sel); }
  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "k" + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function isoLocal(d) {   // 2026-11-23T09:58:00+08:00: the phone's own clock and offset
    var off = -d.getTimezoneOffset(), sign = off >= 0 ? "+" : "-";
    off = Math.abs(off);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + sign + pad(Math.floor(off / 60)) + ":" + pad(off % 60);
  }
  function hhmm(iso) { return iso ? iso.slice(5, 16).replace("T", " ") : ""; }
  var toastTimer = null;
  function toast(text) {
    var el = $("#toast");
    el.textContent = text; el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.hidden = true; }, 4000);
  }
  function api(url, opts) {
    opts = opts || {};
    opts.credentials = "same-origin";
    opts.headers = Object.assign({"X-Requested-With": "fetch"}, opts.headers || {});
    return fetch(url, opts);
  }

  // ---------------------------------------------------------------- views
  function go(name) {
    Array.prototype.forEach.call(document.querySelectorAll(".view"), function (v) { v.hidden = v.dataset.view !== name; });
    Array.prototype.forEach.call(document.querySelectorAll(".m-tabs button"), function (b) {
      b.classList.toggle("active", b.dataset.go === name || (name === "task" && b.dataset.go === "tasks"));
    });
    if (name === "tasks") loadTasks();
    if (name === "outbox") renderOutbox();
    if (name === "report") showMap();
    window.scrollTo(0, 0);
  }
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-go]");
    if (b) go(b.dataset.go);
  });

  // ---------------------------------------------------------------- network state
  function setNet() {
    var el = $("#net");
    el.textContent = navigator.onLine ? "在线" : "离线";
    el.classList.toggle("offline", !navigator.onLine);
  }
  window.addEventListener("online", function () { setNet(); flush(); loadCategories(); loadGrid(); });
  window.addEventListener("offline", setNet);

  // ---------------------------------------------------------------- position
  function showPosition() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-pos]"), function (el) {
      var p = state.position, pin = el.closest("#report-form") && state.pin;
      if (pin) {
        el.classList.remove("bad");
        el.dataset.gridCell = pin.grid_cell || "";
        el.textContent = "地图选点：" + pin.lat.toFixed(6) + ", " + pin.lon.toFixed(6) + (pin.place ? " · " + pin.place : " · 正在查询网格…");
        return;
      }
      delete el.dataset.gridCell;
      if (!p) return;
      el.classList.remove("bad");
      el.textContent = "位置：" + p.lat.toFixed(6) + ", " + p.lon.toFixed(6) + "（±" + Math.round(p.accuracy || 0) + " 米）" + (p.place ? " · " + p.place : "");
    });
  }
  function locatePlace() {
    var p = state.position;
    if (!p || !navigator.onLine) return;
    api("/api/geo/locate?lat=" + p.lat + "&lon=" + p.lon).then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        if (state.position !== p) return;
        p.place = res[0] === 200 ? (res[1].grid_name || res[1].grid_cell) + (res[1].nearest_road ? "，" + res[1].nearest_road + "附近" : "")
                                 : res[1].message;
        showPosition();
      }).catch(function () {});
  }
  if (navigator.geolocation) {
    navigator.geolocation.watchPosition(function (pos) {
      var first = !state.position;
      state.position = {lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy: pos.coords.accuracy, at: new Date(pos.timestamp || Date.now())};
      showPosition();
      if (first) { locatePlace(); if (state.tasks.length) loadTasks(); }
      showGps(first);
    }, function (err) {
      Array.prototype.forEach.call(document.querySelectorAll("[data-pos]"), function (el) {
        el.classList.add("bad");
        el.textContent = err.code === 1 ? "未允许定位：请在浏览器设置中允许本站使用位置" : "暂时无法定位，请到开阔处重试";
      });
    }, {enableHighAccuracy: true, maximumAge: 15000, timeout: 20000});
  }

  // ---------------------------------------------------------------- the report form's map
  // A small Leaflet map over the vector grid (no tile server needed): centred on the GPS fix,
  // else on the cells of my tasks, else the whole grid. A tap sets or moves the pin (the
  // position sent) and shows the grid cell it falls in; "使用当前位置" goes back to GPS.
  function loadGrid() {
    if (!navigator.onLine) return Promise.resolve();
    return api("/api/geo/grid").then(function (r) { return r.ok ? r.json() : null; }).then(function (fc) {
      if (!fc || !fc.features) return;
      state.grid = fc;
      put(CACHE, {key: "grid", value: fc, at: Date.now()});
      if (state.map) drawGrid();
    }).catch(function () {});
  }
  function drawGrid() {
    var m = state.map;
    if (!m || !state.grid) return;
    if (m._gridLayer) m.removeLayer(m._gridLayer);
    m._gridLayer = L.geoJSON(state.grid, {interactive: false,
      style: {color: "#64748b", weight: 1, fillColor: "#dbeafe", fillOpacity: 0.35},
      onEachFeature: function (f, layer) {
        if (f.properties.name) layer.bindTooltip(f.properties.name, {permanent: true, direction: "center", className: "m-cell-label"});
      }}).addTo(m);
    if (!m._centred) centreMap();
  }
  function centreMap() {
    var m = state.map, p = state.position;
    if (!m) return;
    if (state.pin) { m.setView([state.pin.lat, state.pin.lon], 16); m._centred = true; return; }
    if (p) { m.setView([p.lat, p.lon], 16); m._centred = true; return; }
    if (!state.grid || !state.grid.features.length) { m.setView([32.05, 118.78], 14); return; }
    var mine = {};
    state.tasks.forEach(function (t) { if (t.grid_cell) mine[t.grid_cell] = 1; });
    var cells = state.grid.features.filter(function (f) { return mine[f.properties.id]; });
    var layer = L.geoJSON({type: "FeatureCollection", features: cells.length ? cells : state.grid.features});
    m.fitBounds(layer.getBounds(), {padding: [8, 8]});
  }
  function showGps(first) {
    var m = state.map, p = state.position;
    if (!m || !p) return;
    if (!m._gps) m._gps = L.marker([p.lat, p.lon], {icon: L.divIcon({className: "m-gps", iconSize: [14, 14]}), interactive: false, keyboard: false}).addTo(m);
    else m._gps.setLatLng([p.lat, p.lon]);
    if (first && !state.pin) centreMap();
  }
  function showMap() {
    if (!window.L) return;
    if (!state.map) {
      // no double-tap zoom: two quick taps move the pin twice (zoom with + / − or two fingers)
      var m = state.map = L.map("report-map", {zoomControl: true, attributionControl: false, maxZoom: 19, minZoom: 10,
                                               doubleClickZoom: false});
      m.on("click", function (e) { setPin(e.latlng.lat, e.latlng.lng); });
      drawGrid();
      centreMap();
      showGps(false);
      window.fieldApp.map = m;
    }
    setTimeout(function () { state.map.invalidateSize(); }, 0);   // the view was hidden until now
  }
  function inRing(lon, lat, ring) {   // display only, offline: the server locates the case itself
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > lat) !== (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  function cellOffline(lat, lon) {
    var hit = null;
    ((state.grid || {}).features || []).some(function (f) {
      var g = f.geometry, polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
      if (polys.some(function (rings) { return inRing(lon, lat, rings[0]); })) { hit = f.properties; return true; }
      return false;
    });
    return hit;
  }
  function setPin(lat, lon) {
    var pin = state.pin = {lat: lat, lon: lon, place: "", grid_cell: ""}, m = state.map;
    if (m) {
      if (!m._pin) m._pin = L.marker([lat, lon], {icon: L.divIcon({className: "m-pin", iconSize: [22, 22]}), keyboard: false, interactive: false}).addTo(m);
      else m._pin.setLatLng([lat, lon]);
    }
    $("#use-gps").hidden = false;
    body.dataset.pin = "1";
    showPosition();
    function offline() {
      var c = cellOffline(lat, lon);
      pin.grid_cell = c ? c.id : "";
      pin.place = c ? (c.name || c.id) + " " + c.id + "（离线估算）" : "不在任何单元网格内";
    }
    if (!navigator.onLine) { offline(); showPosition(); return; }
    api("/api/geo/locate?lat=" + lat.toFixed(7) + "&lon=" + lon.toFixed(7))
      .then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        if (state.pin !== pin) return;
        if (res[0] === 200) {
          pin.grid_cell = res[1].grid_cell;
          pin.place = (res[1].grid_name || "") + " " + res[1].grid_cell + (res[1].nearest_road ? "，" + res[1].nearest_road + "附近" : "");
        } else { pin.place = res[1].message || "无法确定网格"; }
        showPosition();
      }, function () { if (state.pin === pin) { offline(); showPosition(); } });
  }
  function clearPin() {
    state.pin = null;
    if (state.map && state.map._pin) { state.map.removeLayer(state.map._pin); state.map._pin = null; }
    $("#use-gps").hidden = true;
    delete body.dataset.pin;
    showPosition();
    if (state.map && state.position) state.map.setView([state.position.lat, state.position.lon], state.map.getZoom());
  }
  $("#use-gps").addEventListener("click", clearPin);

  // ---------------------------------------------------------------- categories, offline too
  // The directory (with pinyin and initials) is kept in IndexedDB and refreshed when online;
  // the picker asks the server (the desk's ranking) and falls back to the same tiers here.
  function loadCategories() {
    if (!navigator.onLine) return Promise.resolve();
    return api("/api/categories").then(function (r) { return r.ok ? r.json() : null; }).then(function (list) {
      if (!list || !list.length) return;
      setCategories(list);
      return put(CACHE, {key: "categories", value: list, at: Date.now()});
    }).catch(function () {});
  }
  function setCategories(list) {
    state.categories = list || [];
    body.dataset.categories = String(state.categories.length);
  }
  function searchLocal(q, limit) {   // the tiers of case_core/domain/category_search.py
    var letters = /^[\x00-\x7f]*$/.test(q) ? q.toLowerCase().replace(/[^a-z]/g, "") : "";
    var ranked = [];
    state.categories.forEach(function (c, order) {
      var name = c.name, full = c.pinyin || "", ini = c.initials || "", tier = null;
      if (name === q) tier = 0;
      else if (name.indexOf(q) === 0) tier = 1;
      else if (name.indexOf(q) >= 0) tier = 2;
      else if (letters.length >= 2 && full.indexOf(letters) === 0) tier = 3;
      else if (letters.length >= 2 && full.indexOf(letters) >= 0) tier = 4;
      else if (letters.length >= 2 && ini.indexOf(letters) === 0) tier = 5;
      else if (letters.length >= 2 && ini.indexOf(letters) >= 0) tier = 6;
      else if ((c.class_name || "").indexOf(q) >= 0) tier = 7;
      else if (/^[0-9]+$/.test(q) && c.code.indexOf(q) === 0) tier = 8;
      if (tier !== null) ranked.push([tier, name.length, order, c]);
    });
    ranked.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]; });
    return ranked.slice(0, limit).map(function (r) { return r[3]; });
  }
  if (window.hotlinePicker) {
    hotlinePicker.kinds.field_category = Object.assign({}, hotlinePicker.kinds.category, {
      search: function (q) {
        var local = function () { return searchLocal(q, 40); };
        if (!navigator.onLine) return Promise.resolve(local());
        return api("/api/categories?limit=40&q=" + encodeURIComponent(q))
          .then(function (r) { return r.ok ? r.json() : local(); }, local);
      }
    });
  }

  // ---------------------------------------------------------------- photos
  function shrink(file) {   // ≤ 1600 px JPEG: a weak signal carries it, detail stays
    if (!window.createImageBitmap) return Promise.resolve(file);
    return createImageBitmap(file).then(function (bmp) {
      var scale = Math.min(1, 1600 / Math.max(bmp.width, bmp.height));
      var c = document.createElement("canvas");
      c.width = Math.round(bmp.width * scale); c.height = Math.round(bmp.height * scale);
      c.getContext("2d").drawImage(bmp, 0, 0, c.width, c.height);
      return new Promise(function (resolve) { c.toBlob(function (b) { resolve(b || file); }, "image/jpeg", 0.85); });
    }).catch(function () { return file; });
  }
  // Each thumbnail has its own × (a blurred or wrong shot is taken out before sending).
  function photoHint(form) {
    var hint = form.querySelector("[data-photo-hint]"), n = form._photos.length;
    if (!hint.dataset.empty) hint.dataset.empty = hint.textContent;
    hint.textContent = n ? "已拍 " + n + " 张，可继续拍" : hint.dataset.empty;
    form.querySelector(".photo-cta").textContent = n ? "再拍一张" : "拍照";
  }
  function wirePhotos(form) {
    form._photos = [];
    var input = form.querySelector("input[type=file]"), thumbs = form.querySelector("[data-thumbs]");
    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      Promise.all(files.map(shrink)).then(function (blobs) {
        blobs.forEach(function (b) {
          form._photos.push(b);
          var box = document.createElement("span"), img = document.createElement("img"), rm = document.createElement("button");
          box.className = "thumb";
          img.src = URL.createObjectURL(b); img.alt = "现场照片";
          rm.type = "button"; rm.className = "rm"; rm.textContent = "×"; rm.setAttribute("aria-label", "删除这张照片");
          rm.addEventListener("click", function () {
            var i = form._photos.indexOf(b);
            if (i >= 0) form._photos.splice(i, 1);
            URL.revokeObjectURL(img.src);
            box.remove();
            photoHint(form);
          });
          box.appendChild(img); box.appendChild(rm);
          thumbs.appendChild(box);
        });
        input.value = "";
        photoHint(form);
      });
    });
  }
  function resetPhotos(form) { form._photos = []; form.querySelector("[data-thumbs]").innerHTML = ""; photoHint(form); }

  // ---------------------------------------------------------------- tasks
  var CHOICES = {verify: [["confirmed", "属实"], ["not_confirmed", "不属实"]], check: [["passed", "已处置好"], ["failed", "未处置好"]]};
  function taskCard(t) {
    var dl = t.deadline || {};
    var li = document.createElement("li");
    li.innerHTML = '<button type="button" class="card dl-' + esc(dl.status || "none") + '">' +
      '<span class="top"><span class="step">' + esc(t.step_label) + "</span><span>" + esc(t.number) + "</span></span>" +
      '<span class="desc">' + esc(t.description) + "</span>" +
      '<span class="top"><span>' + esc(t.address || t.category_name || "") + (t.distance_m != null ? " · " + (t.distance_m >= 1000 ? (t.distance_m / 1000).toFixed(1) + " 公里" : t.distance_m + " 米") : "") + "</span>" +
      '<span class="dl">' + esc(dl.label || "") + (dl.due_at ? " " + hhmm(dl.due_at) : "") + "</span></span></button>";
    li.firstChild.addEventListener("click", function () { openTask(t); });
    return li;
  }
  function renderTasks(list, note) {
    state.tasks = list;
    var ul = $("#tasks");
    ul.innerHTML = "";
    list.forEach(function (t) { ul.appendChild(taskCard(t)); });
    $("#tasks-note").textContent = note || (list.length ? "共 " + list.length + " 项，超期和临期在前，近的在前" : "暂无待办任务");
    body.dataset.tasks = String(list.length);
  }
  function loadTasks() {
    var p = state.position;
    var url = "/api/field/tasks" + (p ? "?lat=" + p.lat + "&lon=" + p.lon : "");
    if (!navigator.onLine) return showCachedTasks();
    return api(url).then(function (r) {
      if (r.status === 401) { body.classList.add("signed-out"); go("login"); return; }
      body.classList.remove("signed-out");
      return r.json().then(function (list) {
        if (!r.ok) { toast(list.message || "任务加载失败"); return; }
        localStorage.setItem("field-tasks", JSON.stringify(list));
        renderTasks(list);
      });
    }).catch(showCachedTasks);
  }
  function showCachedTasks() {
    var cached = [];
    try { cached = JSON.parse(localStorage.getItem("field-tasks") || "[]"); } catch (e) { cached = []; }
    renderTasks(cached, "离线：显示上次同步的任务，提交内容将在联网后发送");
  }
  function openTask(t) {
    state.task = t;
    var form = $("#task-form");
    form.reset(); resetPhotos(form);
    $("#task-title").textContent = t.step_label + " · " + t.number;
    $("#task-meta").textContent = [t.category_name, t.address, t.deadline ? t.deadline.label + " " + hhmm(t.deadline.due_at) : ""].filter(Boolean).join(" · ");
    $("#task-desc").textContent = t.description;
    $("#task-legend").textContent = t.step === "verify" ? "核实结果" : "核查结果";
    var labels = form.querySelectorAll(".choice");
    CHOICES[t.step].forEach(function (c, i) {
      labels[i].querySelector("input").value = c[0];
      labels[i].querySelector("span").textContent = c[1];
    });
    go("task");
    showPosition();
  }

  // ---------------------------------------------------------------- outbox
  function queue(item) {
    item.created = Date.now();
    return put(OUTBOX, item).then(function () {
      renderOutbox();
      toast(navigator.onLine ? "已保存，正在发送…" : "无网络：已保存在手机上，联网后自动发送");
      return flush();
    });
  }
  function send(item) {
    var fd = new FormData();
    Object.keys(item.fields).forEach(function (k) { if (item.fields[k] != null && item.fields[k] !== "") fd.append(k, item.fields[k]); });
    item.photos.forEach(function (b, i) { fd.append("photo", b, "photo-" + (i + 1) + ".jpg"); });
    fd.append("idempotency_key", item.key);
    return api(item.url, {method: "POST", body: fd});
  }
  function flush() {
    if (state.flushing) { state.again = true; return Promise.resolve(); }
    if (!navigator.onLine) return Promise.resolve();
    state.flushing = true;
    var sentAny = false;
    function next(items) {
      if (!items.length || !navigator.onLine) return null;
      var item = items[0];
      return send(item).then(function (r) {
        if (r.status === 401) { toast("登录已过期：请重新登录后自动发送"); return null; }
        if (r.status === 429 || r.status >= 500) return null;   // try again later
        return r.json().catch(function () { return {}; }).then(function (b) {
          if (r.status === 409 && b.error === "in_progress") return null;   // the first send is still being filed
          var done = {key: item.key, kind: item.kind, title: item.title, created: item.created, sent_at: Date.now()};
          if (r.ok) { done.result = b; sentAny = true; } else { done.error = b.message || ("HTTP " + r.status); }
          return put(SENT, done).then(function () { return del(OUTBOX, item.key); }).then(function () {
            toast(r.ok ? (item.kind === "report" ? "上报成功：案卷 " + b.number : "已提交：" + item.title) : "提交失败：" + done.error);
            return next(items.slice(1));
          });
        });
      }, function () { return null; });   // no network after all: stays queued
    }
    return all(OUTBOX).then(next).then(function () {
      state.flushing = false;
      if (state.again) { state.again = false; return flush(); }
      renderOutbox();
      if (sentAny && !$("#tasks-view").hidden) loadTasks();
    }, function () { state.flushing = false; });
  }
  function renderOutbox() {
    return Promise.all([all(OUTBOX), all(SENT)]).then(function (res) {
      var out = res[0], sent = res[1].reverse().slice(0, 20);
      var badge = $("#outbox-count");
      badge.textContent = String(out.length); badge.hidden = !out.length;
      body.dataset.outbox = String(out.length);
      body.dataset.sent = String(res[1].filter(function (s) { return s.result; }).length);
      $("#outbox").innerHTML = out.map(function (i) {
        return '<li class="card dl-yellow"><span class="top"><span class="step">' + (i.kind === "report" ? "上报" : "任务") +
          "</span><span>" + hhmm(isoLocal(new Date(i.created))) + '</span></span><span class="desc">' + esc(i.title) +
          "</span><span class=\"top\"><span>" + i.photos.length + " 张照片</span><span>等待网络</span></span></li>";
      }).join("") || '<li class="note">没有待发送的内容</li>';
      $("#sent").innerHTML = sent.map(function (s) {
        return '<li class="card ' + (s.error ? "dl-overdue" : "") + '"><span class="top"><span class="step">' + (s.kind === "report" ? "上报" : "任务") +
          "</span><span>" + esc(s.result ? (s.result.number || "") : "未受理") + '</span></span><span class="desc">' + esc(s.title) +
          "</span>" + (s.error ? '<span class="top"><span>' + esc(s.error) + "</span></span>" : "") + "</li>";
      }).join("");
    });
  }
  setInterval(flush, 20000);

  // ---------------------------------------------------------------- forms
  var reportForm = $("#report-form"), taskForm = $("#task-form");
  wirePhotos(reportForm); wirePhotos(taskForm);
  function here(form) {
    var p = form === reportForm && state.pin ? state.pin : state.position;
    return p ? {lat: p.lat.toFixed(7), lon: p.lon.toFixed(7), captured_at: isoLocal(new Date())} : {captured_at: isoLocal(new Date())};
  }
  reportForm.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!reportForm._photos.length) { toast("请至少拍一张现场照片"); return; }
    if (!state.position && !state.pin) { toast("尚未定位：请稍候、到开阔处重试，或在地图上点选位置"); return; }
    var desc = reportForm.elements.description.value.trim();
    if (!desc) { toast("请填写问题描述"); return; }
    var catInput = reportForm.querySelector("input[name=category]");
    var f = here(reportForm);
    queue({key: uuid(), kind: "report", url: "/api/field/reports", title: desc.slice(0, 40), photos: reportForm._photos.slice(),
           fields: {lat: f.lat, lon: f.lon, captured_at: f.captured_at, category: catInput ? catInput.value : "", description: desc}})
      .then(function () {
        reportForm.reset(); resetPhotos(reportForm);
        var picker = reportForm.querySelector("[data-picker]");
        if (picker && picker.picker) picker.picker.clear();
        if (state.pin) clearPin();
      });
  });
  taskForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var t = state.task, result = (taskForm.querySelector("input[name=result]:checked") || {}).value;
    if (!t) return;
    if (!result) { toast("请选择" + (t.step === "verify" ? "核实" : "核查") + "结果"); return; }
    var f = here();
    queue({key: uuid(), kind: "step", url: "/api/field/tasks/" + t.id, title: t.step_label + " " + t.number,
           photos: taskForm._photos.slice(),
           fields: {result: result, note: taskForm.elements.note.value.trim(), lat: f.lat, lon: f.lon,
                    captured_at: f.captured_at}})   // no expected_version: an urge meanwhile must not void the visit
      .then(function () { go("tasks"); });
  });
  $("#refresh").addEventListener("click", loadTasks);

  // ---------------------------------------------------------------- on duty (opt-in position)
  $("#interval").textContent = String(INTERVAL_S);
  function sendPosition() {
    var p = state.position;
    if (!p || !navigator.onLine) return;
    api("/api/field/position", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({lat: p.lat, lon: p.lon, accuracy: p.accuracy})}).catch(function () {});
  }
  function setDuty(on) {
    localStorage.setItem("field-duty", on ? "1" : "");
    $("#duty-chip").hidden = !on;   // sharing the position is always visible, on every view
    clearInterval(state.dutyTimer);
    if (on) { sendPosition(); state.dutyTimer = setInterval(sendPosition, INTERVAL_S * 1000); }
  }
  var duty = $("#duty");
  duty.checked = localStorage.getItem("field-duty") === "1";
  duty.addEventListener("change", function () { setDuty(duty.checked); });
  setDuty(duty.checked);

  // ---------------------------------------------------------------- start
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/m/sw.js", {scope: "/m/"}).catch(function () {});
  setNet();
  window.fieldApp = {flush: flush, loadTasks: loadTasks, outbox: function () { return all(OUTBOX); }, sent: function () { return all(SENT); },
                     map: null, pin: function () { return state.pin; }, searchCategories: function (q) { return searchLocal(q, 40); }};
  cached("categories").then(function (list) { if (list && !state.categories.length) setCategories(list); }).catch(function () {});
  cached("grid").then(function (fc) { if (fc && !state.grid) { state.grid = fc; drawGrid(); } }).catch(function () {});
  loadCategories(); loadGrid();
  renderOutbox().then(function () { return loadTasks(); }).then(function () { body.dataset.ready = "1"; flush(); });
})();
