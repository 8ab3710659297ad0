// 城管通 — the inspectors' phone app (/m/). My tasks (核实/核查), a task's form, 上报, and the
// outbox: every submission is first saved in IndexedDB with its own idempotency key, the
// photos, and the position and time of the moment it was made; it is sent when the phone
// is online and removed only once the server has answered, so a lost answer is sent again
// and the server (same key) gives back the same case instead of filing a second one.
(function () {
  "use strict";
  var DB_NAME = "hotline-field", OUTBOX = "outbox", SENT = "sent";
  var body = document.body;
  var INTERVAL_S = Number(body.dataset.positionInterval) || 60;
  var state = {position: null, tasks: [], task: null, flushing: false, dutyTimer: null};

  // ---------------------------------------------------------------- IndexedDB
  var dbPromise = new Promise(function (resolve, reject) {
    var req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = function () {
      req.result.createObjectStore(OUTBOX, {keyPath: "key"});
      req.result.createObjectStore(SENT, {keyPath: "key"});
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
  window.addEventListener("online", function () { setNet(); flush(); });
  window.addEventListener("offline", setNet);

  // ---------------------------------------------------------------- position
  function showPosition() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-pos]"), function (el) {
      var p = state.position;
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
    }, function (err) {
      Array.prototype.forEach.call(document.querySelectorAll("[data-pos]"), function (el) {
        el.classList.add("bad");
        el.textContent = err.code === 1 ? "未允许定位：请在浏览器设置中允许本站使用位置" : "暂时无法定位，请到开阔处重试";
      });
    }, {enableHighAccuracy: true, maximumAge: 15000, timeout: 20000});
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
  function wirePhotos(form) {
    form._photos = [];
    var input = form.querySelector("input[type=file]"), thumbs = form.querySelector("[data-thumbs]");
    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      Promise.all(files.map(shrink)).then(function (blobs) {
        blobs.forEach(function (b) {
          form._photos.push(b);
          var img = document.createElement("img");
          img.src = URL.createObjectURL(b); img.alt = "现场照片";
          thumbs.appendChild(img);
        });
        input.value = "";
      });
    });
  }
  function resetPhotos(form) { form._photos = []; form.querySelector("[data-thumbs]").innerHTML = ""; }

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
  function here() {
    var p = state.position;
    return p ? {lat: p.lat.toFixed(7), lon: p.lon.toFixed(7), captured_at: isoLocal(new Date())} : {captured_at: isoLocal(new Date())};
  }
  reportForm.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!reportForm._photos.length) { toast("请至少拍一张现场照片"); return; }
    if (!state.position) { toast("尚未定位：请稍候或到开阔处重试"); return; }
    var desc = reportForm.elements.description.value.trim();
    if (!desc) { toast("请填写问题描述"); return; }
    var catInput = reportForm.querySelector("input[name=category]");
    var f = here();
    queue({key: uuid(), kind: "report", url: "/api/field/reports", title: desc.slice(0, 40), photos: reportForm._photos.slice(),
           fields: {lat: f.lat, lon: f.lon, captured_at: f.captured_at, category: catInput ? catInput.value : "", description: desc}})
      .then(function () {
        reportForm.reset(); resetPhotos(reportForm);
        var picker = reportForm.querySelector("[data-picker]");
        if (picker && picker.picker) picker.picker.clear();
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
  window.fieldApp = {flush: flush, loadTasks: loadTasks, outbox: function () { return all(OUTBOX); }, sent: function () { return all(SENT); }};
  renderOutbox().then(function () { return loadTasks(); }).then(function () { body.dataset.ready = "1"; flush(); });
})();
