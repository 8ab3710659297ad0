// Photo upload widgets and the full-size viewer (web/photos.py).
//
// <div class="photo-input" data-case-id="7" data-stage="after" data-target="f-photos">
//   <input type="file" class="photo-file" accept="image/*" multiple> …
// Each chosen file is sent to POST /api/cases/{id}/photos; its thumbnail is shown and its URL
// added (one per line) to the element named by data-target (the action form's `photos` field).
// data-reload="1" reloads the page when done (the case page); a `.photo-stage` select, when
// present, gives the stage instead of data-stage.
(function () {
  var STAGE_LABELS = {before: "处置前", after: "处置后", report: "上报"};

  function upload(caseId, file, stage) {
    var body = new FormData();
    body.append("file", file);
    body.append("stage", stage);
    return fetch("/api/cases/" + caseId + "/photos", {
      method: "POST", credentials: "same-origin", headers: {"X-Requested-With": "fetch"}, body: body
    }).then(function (r) {
      return r.json().then(function (j) { return {status: r.status, body: j}; },
                           function () { return {status: r.status, body: {message: "上传失败（HTTP " + r.status + "）"}}; });
    });
  }

  function setup(box) {
    var input = box.querySelector(".photo-file"), status = box.querySelector(".upload-status");
    var target = box.dataset.target ? document.getElementById(box.dataset.target) : null;
    var thumbs = box.querySelector(".thumbs");
    if (!thumbs) { thumbs = document.createElement("div"); thumbs.className = "thumbs"; box.appendChild(thumbs); }
    if (target && target.value) {
      target.value.split("\n").forEach(function (url) {
        url = url.trim();
        if (url.indexOf("/api/photos/") === 0) addThumb(thumbs, {url: url, thumb_url: url + "/thumb"}, "");
      });
    }
    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      if (!files.length) return;
      var stageSelect = box.querySelector(".photo-stage");
      var stage = stageSelect ? stageSelect.value : (box.dataset.stage || "report");
      var done = 0, failed = [];
      status.textContent = "正在上传 " + files.length + " 张……";
      box.classList.add("busy");
      var chain = Promise.resolve();
      files.forEach(function (file) {
        chain = chain.then(function () {
          return upload(box.dataset.caseId, file, stage).then(function (r) {
            if (r.status === 201) {
              done += 1;
              addThumb(thumbs, r.body, STAGE_LABELS[stage] || stage);
              if (target) target.value = (target.value.trim() ? target.value.trim() + "\n" : "") + r.body.url;
            } else {
              failed.push(file.name + "：" + (r.body.message || "上传失败"));
            }
          }, function () { failed.push(file.name + "：网络错误"); });
        });
      });
      chain.then(function () {
        box.classList.remove("busy");
        input.value = "";
        status.textContent = (done ? "已上传 " + done + " 张" : "") + (failed.length ? (done ? "；" : "") + failed.join("；") : "");
        status.classList.toggle("field-error", failed.length > 0);
        if (done && box.dataset.reload) location.reload();
      });
    });
  }

  function addThumb(thumbs, photo, label) {
    var a = document.createElement("a");
    a.href = photo.url; a.className = "photo"; a.dataset.full = photo.url; a.title = label;
    var img = document.createElement("img"); img.src = photo.thumb_url; img.alt = (label || "") + "照片";
    a.appendChild(img); thumbs.appendChild(a);
  }

  // Full size on click; click or Esc closes.
  function openViewer(url, caption) {
    var box = document.createElement("div"); box.className = "lightbox"; box.setAttribute("role", "dialog");
    var img = document.createElement("img"); img.src = url; img.alt = caption || "照片";
    box.appendChild(img);
    if (caption) { var c = document.createElement("div"); c.className = "lb-caption"; c.textContent = caption; box.appendChild(c); }
    function close() { box.remove(); document.removeEventListener("keydown", onKey); }
    function onKey(e) { if (e.key === "Escape") close(); }
    box.addEventListener("click", close);
    document.addEventListener("keydown", onKey);
    document.body.appendChild(box);
  }
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a.photo");
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    openViewer(a.dataset.full || a.href, a.title);
  });

  document.querySelectorAll(".photo-input").forEach(setup);
})();
