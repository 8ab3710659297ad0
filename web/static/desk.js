// The agent desk: availability, the screen pop (caller, IVR path, history, transcript), the case
// form with pickers, call control (挂断/保持/静音/转接) with a call timer and wrap-up countdown.
(function () {
  var LABELS = {logged_out: "未签入", ready: "示闲", ringing: "振铃中", on_call: "通话中", wrap_up: "话后处理", paused: "示忙", dialing: "外呼中"};
  var $ = function (id) { return document.getElementById(id); };
  window.hotlinePicker.init(document);
  var savedNumber = null;  // the case this call was saved as or linked to
  var call = {id: null, since: null, until: null, held: false, muted: false, state: "ringing"};
  var touched = {category: false, place: false};  // the agent chose these by hand: suggestions leave them
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function mmss(s) { s = Math.max(0, Math.floor(s)); return pad(Math.floor(s / 60)) + ":" + pad(s % 60); }
  // ISO 8601 with an offset (the API's convention) as is; a naive one is the center's local time.
  function localTime(iso) {
    if (!iso) return null;
    var t = /(Z|[+-]\d\d:\d\d)$/.test(iso) ? new Date(iso) : new Date(iso.slice(0, 19));
    return isNaN(t.getTime()) ? null : t.getTime();
  }
  function message(text) { var m = $("desk-message"); m.textContent = text || ""; m.hidden = !text; }
  function callMessage(text) { $("call-message").textContent = text || ""; }

  // -- agent state, call timer and wrap-up countdown ----------------------------------------------
  function showStatus(s) {
    if (!s) return;
    var el = $("agent-status"); el.dataset.status = s.status; el.textContent = LABELS[s.status] || s.status;
    if (s.status === "on_call") {
      // A live call keeps its start: a state event during hold or a consultation must not restart the timer.
      if (call.state !== "on_call" && call.state !== "held") { call.since = localTime(s.since) || Date.now(); }
      setCallState(call.held ? "held" : "on_call");
    } else if (s.status === "wrap_up") {
      setCallState("ended");
    } else if (s.status === "ringing") {
      setCallState("ringing");
    } else if (call.state === "wrap_up" || call.state === "ended") {
      call.until = null; $("wrap-countdown").hidden = true;
    }
  }
  var STATE_LABELS = {ringing: "振铃中", on_call: "通话中", held: "保持中", ended: "已结束"};
  function setCallState(state) {
    call.state = state;
    var el = $("call-state"); el.dataset.state = state; el.textContent = STATE_LABELS[state] || state;
    var live = state === "on_call" || state === "held";
    ["btn-hangup", "btn-hold", "btn-mute", "btn-transfer-open"].forEach(function (id) { $(id).disabled = !live; });
    $("btn-hold").textContent = state === "held" ? "恢复" : "保持";
    $("btn-hold").setAttribute("aria-pressed", state === "held" ? "true" : "false");
    if (!live) { closeTransfer(); }
  }
  function tick() {
    if (call.since && (call.state === "on_call" || call.state === "held")) {
      $("call-timer").textContent = mmss((Date.now() - call.since) / 1000);
    }
    var w = $("wrap-countdown");
    if (call.until && $("agent-status").dataset.status === "wrap_up") {
      var left = (call.until - Date.now()) / 1000;
      w.hidden = false; w.textContent = "话后处理 剩余 " + mmss(left);
      w.classList.toggle("urgent", left < 10);
    } else { w.hidden = true; }
  }
  setInterval(tick, 500);

  function setState(state, reason) {
    hotlineApi("POST", "/api/desk/state", {state: state, reason: reason}).then(function (r) {
      if (r.status === 200) { message(""); showStatus(r.body); } else { message(r.body.message || "操作失败"); }
    }, function () { message("网络错误，请重试"); });
  }
  $("btn-ready").onclick = function () { setState("ready"); };
  $("btn-pause").onclick = function () { setState("paused", $("pause-reason").value); };
  $("btn-logout").onclick = function () { setState("logged_out"); };

  // -- call control -----------------------------------------------------------------------------
  function control(action) {
    callMessage("");
    return hotlineApi("POST", "/api/desk/call/" + action, {call_id: call.id}).then(function (r) {
      if (r.status !== 200) { callMessage(r.body.message || "操作失败"); return; }
      call.held = r.body.held; call.muted = r.body.muted;
      $("btn-mute").textContent = call.muted ? "取消静音" : "静音";
      $("btn-mute").setAttribute("aria-pressed", call.muted ? "true" : "false");
      $("callbar").classList.toggle("muted-call", call.muted);
      setCallState(r.body.ended ? "ended" : (call.held ? "held" : "on_call"));
      callMessage(r.body.message || "");
    }, function () { callMessage("网络错误，请重试"); });
  }
  $("btn-hangup").onclick = function () { control("hangup"); };
  $("btn-hold").onclick = function () { control(call.held ? "resume" : "hold"); };
  $("btn-mute").onclick = function () { control(call.muted ? "unmute" : "mute"); };

  // -- transfer (转接 / 咨询转接) with a target list: queues, agents with their state, recent numbers --
  var tf = $("transfer-form");
  function closeTransfer() { tf.hidden = true; $("btn-transfer-open").setAttribute("aria-expanded", "false"); }
  function recentNumbers() { try { return JSON.parse(localStorage.getItem("desk.transferNumbers") || "[]"); } catch (e) { return []; } }
  function rememberNumber(n) {
    var list = recentNumbers().filter(function (x) { return x !== n; }); list.unshift(n);
    try { localStorage.setItem("desk.transferNumbers", JSON.stringify(list.slice(0, 6))); } catch (e) { /* private mode */ }
  }
  function loadTargets() {
    return hotlineApi("GET", "/api/desk/transfer-targets").then(function (r) {
      var sel = $("transfer-target"), keep = sel.value; sel.innerHTML = "";
      sel.appendChild(option("", "请选择…"));
      function group(label, items) {
        if (!items.length) return;
        var g = document.createElement("optgroup"); g.label = label;
        items.forEach(function (o) { g.appendChild(o); }); sel.appendChild(g);
      }
      var b = r.body || {};
      group("队列", (b.queues || []).map(function (q) { return option("queue:" + q.name, q.label + "队列（等待 " + q.waiting + "）"); }));
      group("坐席", (b.agents || []).filter(function (a) { return a.agent !== $("agent-status").dataset.agent; }).map(function (a) {
        var o = option("agent:" + a.agent, a.name + " · 分机 " + a.extension + " · " + a.status_label);
        o.disabled = a.status === "logged_out"; return o;
      }));
      var numbers = (b.numbers || []).concat(recentNumbers()).filter(function (n, i, all) { return all.indexOf(n) === i; });
      group("最近号码", numbers.map(function (n) { return option("number:" + n, n); }));
      sel.value = keep;
    }, function () {});
  }
  $("btn-transfer-open").onclick = function () {
    var open = tf.hidden;
    tf.hidden = !open; this.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) { loadTargets(); $("transfer-target").focus(); }
  };
  function target() {
    var typed = $("transfer-number").value.trim();
    if (typed) return {kind: "number", target: typed};
    var v = $("transfer-target").value, i = v.indexOf(":");
    return i < 0 ? {kind: "", target: ""} : {kind: v.slice(0, i), target: v.slice(i + 1)};
  }
  function transferSay(text, ok) {  // ok: what happened, not an error (not in red)
    var say = tf.querySelector('[data-for="transfer"]');
    say.textContent = text || ""; say.classList.toggle("info", !!ok);
  }
  tf.onsubmit = function (e) {
    e.preventDefault(); transferSay("");
    var t = target();
    if (!t.kind) { transferSay("请选择转接目标或填写外线号码"); return; }
    hotlineApi("POST", "/api/desk/transfer", {call_id: call.id, kind: t.kind, target: t.target}).then(function (r) {
      if (r.status === 202) {
        if (t.kind === "number") rememberNumber(t.target);
        transferSay("已转接", true); setCallState("ended");
        callMessage("已转接给 " + ($("transfer-target").selectedOptions[0] && !$("transfer-number").value.trim()
          ? $("transfer-target").selectedOptions[0].textContent.split(" · ")[0] : t.target));
      }
      else transferSay(r.body.message || "转接失败");
    });
  };
  function consult(action) {
    transferSay("");
    var body = {call_id: call.id, action: action};
    if (action === "start") {
      var t = target();
      if (t.kind !== "agent" && t.kind !== "number") { transferSay("咨询转接请选择坐席或填写外线号码"); return; }
      body.kind = t.kind; body.target = t.target;
      if (t.kind === "number") rememberNumber(t.target);
    }
    hotlineApi("POST", "/api/desk/consult", body).then(function (r) {
      transferSay(r.body.message || "操作失败", r.status === 202);
      if (r.status === 202 && action === "start") { call.held = true; setCallState("held"); }
      if (r.status === 202 && action === "cancel") { call.held = false; setCallState("on_call"); }
      if (r.status === 202 && action === "complete") { setCallState("ended"); callMessage(r.body.message); }
    });
  }
  $("consult-start").onclick = function () { consult("start"); };
  $("consult-complete").onclick = function () { consult("complete"); };
  $("consult-cancel").onclick = function () { consult("cancel"); };

  // -- the pop ------------------------------------------------------------------------------------
  function ivrStep(step) {
    var MENU = {"1": "按1 反映问题", "2": "按2 查询进度", "3": "按3 咨询", "0": "按0 人工", "9": "按9 重听", "#": "按#"};
    if (MENU[step]) return MENU[step];
    if (step.indexOf("queue:") === 0) return "进入排队";
    if (step.indexOf("agent:") === 0) return "转坐席 " + step.slice(6);
    if (step.indexOf("overflow:") === 0) return "溢出";
    if (step === "callback") return "预约回拨";
    return /^[0-9*#]$/.test(step) ? "按" + step : step;
  }
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
  function li(text) { return el("li", "", text); }
  function option(value, text) { var o = document.createElement("option"); o.value = value; o.textContent = text; return o; }
  function clearErrors() { document.querySelectorAll(".field-error").forEach(function (x) { x.textContent = ""; }); }
  function showErrors(body) {
    var fields = (body && body.fields) || {}, placed = false;
    Object.keys(fields).forEach(function (k) {
      var e = document.querySelector('.field-error[data-for="' + k + '"]');
      if (e) { e.textContent = fields[k]; placed = true; }
    });
    message((body && body.message) || "保存失败");
    return placed;
  }
  // "20261207-0012" read out in groups: 2026 1207 0012.
  function readout(number) { return (number || "").replace(/-/g, "").replace(/(\d{4})(?=\d)/g, "$1 "); }
  function saved(text, b) {
    $("saved-text").textContent = text;
    var link = $("saved-link");
    if (b && b.number && b.id) { link.textContent = b.number; link.href = "/cases/" + b.id; link.hidden = false; }
    else { link.hidden = true; }
    $("saved-readout").textContent = b && b.number ? "请告知来电人：案卷编号 " + readout(b.number) : "";
    // Photos at intake (a citizen's MMS or WeChat picture, read out or forwarded): attached to
    // the case just filed, stage 上报, through the same photo API as the case page.
    var photos = $("saved-photos");
    photos.hidden = !(b && b.id);
    if (b && b.id) photos.dataset.caseId = b.id;
    $("saved").hidden = false; message("");
    // Saved once: the same call is not filed twice by a second click (a new pop enables them again).
    ["btn-register", "btn-answer", "btn-link"].forEach(function (id) { $(id).disabled = true; });
    $("saved").scrollIntoView({block: "nearest"});
    // Saving ends wrap-up: show the agent's new state even if the live event is missed.
    hotlineApi("GET", "/api/desk/status").then(function (r) { if (r.status === 200) showStatus(r.body); }, function () {});
  }
  function resetSavedPhotos() {
    var photos = $("saved-photos"), thumbs = photos.querySelector(".thumbs");
    photos.hidden = true; delete photos.dataset.caseId;
    if (thumbs) thumbs.innerHTML = "";
    photos.querySelector(".upload-status").textContent = "";
  }
  function resetForm() {
    $("f-category").picker.clear(); $("f-place").picker.clear(); $("f-link").picker.clear();
    $("category-chips").innerHTML = ""; $("f-dept-hint").textContent = "";
    $("f-case-type").value = "normal"; $("suggest-result").textContent = "";
    touched = {category: false, place: false};
  }
  function pop(ev) {
    $("pop").hidden = false; $("idle").hidden = true; $("saved").hidden = true; savedNumber = null;
    resetSavedPhotos();
    clearErrors(); message(""); callMessage(""); closeTransfer();
    call = {id: ev.call_id, since: null, until: null, held: false, muted: false, state: "ringing"};
    $("call-timer").textContent = "00:00"; $("btn-mute").textContent = "静音"; $("callbar").classList.remove("muted-call");
    setCallState("ringing");
    $("pop").dataset.callId = ev.call_id;
    $("pop-caller").textContent = ev.caller || "未知号码";
    var QUEUES = {report: "反映问题", consult: "咨询", general: "人工服务"};
    $("pop-queue").textContent = ev.callback ? "（预约回拨）" : (ev.queue ? "（" + (QUEUES[ev.queue] || ev.queue) + "队列）" : "");
    $("pop-callback").hidden = !ev.callback;
    $("pop-ivr").textContent = (ev.ivr_path || []).map(ivrStep).join(" → ") || "—";
    transcriptLines = (ev.transcript || []).slice(); partial = ""; showTranscript();
    $("transcript-note").textContent = "";
    history(ev);
    $("f-call-id").value = ev.call_id; $("f-channel").value = ev.did || "12319";
    $("f-phone").value = ev.caller || ""; $("f-description").value = ev.description || "";
    $("f-kind").value = "report"; $("f-answer").value = "";
    resetForm(); fillDueDays();
    ["btn-register", "btn-answer", "btn-link"].forEach(function (id) { $(id).disabled = false; });
    if (ev.description) suggest();
    if (ev.callback) { setCallState("on_call"); call.since = Date.now(); }
  }
  // The caller's earlier calls and cases: with the pop, or just after it (screen_pop_history).
  function history(ev) {
    var pending = ev.history_pending;
    var calls = $("pop-calls"); calls.innerHTML = "";
    (ev.earlier_calls || []).forEach(function (c) {
      var item = el("li", "call-item");
      item.appendChild(el("span", "when", c.started_at));
      item.appendChild(el("span", "outcome outcome-" + (c.case_number ? "case" : "plain"), c.outcome || ""));
      if (c.duration_s !== null && c.duration_s !== undefined) item.appendChild(el("span", "dur", mmss(c.duration_s)));
      if (c.case_number) {
        var a = el("a", "case-link", c.case_number); a.href = "/cases/" + c.case_id; a.target = "_blank"; a.rel = "noopener";
        item.appendChild(a);
      }
      var url = c.recording_url || c.message_url;
      if (url) {
        var play = el("button", "play", "▶ 录音"); play.type = "button"; play.title = "播放这次来电的录音";
        play.onclick = function () {
          var old = item.querySelector("audio");
          if (old) { old.paused ? old.play() : old.pause(); return; }
          var au = document.createElement("audio"); au.controls = true; au.src = url; item.appendChild(au); au.play();
        };
        item.appendChild(play);
      }
      if (c.message_transcript) item.appendChild(el("div", "msg-transcript", "留言：" + c.message_transcript));
      calls.appendChild(item);
    });
    if (!calls.children.length) calls.appendChild(li(pending ? "查询中…" : "无"));
    var cases = $("pop-cases"), linkSel = $("f-link-select"); cases.innerHTML = ""; linkSel.innerHTML = "";
    linkSel.appendChild(option("", "选择历史案卷…"));
    (ev.earlier_cases || []).forEach(function (c) {
      var item = el("li", "case-item");
      var a = el("a", "case-link", c.number); a.href = "/cases/" + c.id; a.target = "_blank"; a.rel = "noopener";
      item.appendChild(a);
      item.appendChild(el("span", "status", c.status_label || c.status));
      if (c.created_at) item.appendChild(el("span", "when", c.created_at));
      item.appendChild(el("div", "desc", c.description));
      cases.appendChild(item);
      linkSel.appendChild(option(c.number, (c.number + " " + (c.status_label || "") + " " + c.description).slice(0, 40)));
    });
    if (!cases.children.length) cases.appendChild(li(pending ? "查询中…" : "无"));
  }
  // -- live transcript (live_transcript events) ----------------------------------------------------
  var transcriptLines = [], partial = "", suggestTimer = null;
  function showTranscript() {
    var box = $("pop-transcript"); box.innerHTML = "";
    if (!transcriptLines.length && !partial) { box.appendChild(el("span", "muted", "等待语音……（配置流式识别模型后显示实时转写）")); return; }
    transcriptLines.forEach(function (t) { box.appendChild(el("p", "final", t)); });
    if (partial) box.appendChild(el("p", "partial", partial));
    box.scrollTop = box.scrollHeight;
  }
  function liveTranscript(ev) {
    if (ev.channel && ev.channel !== 0) return;
    if (ev.final) {
      if (ev.text) transcriptLines.push(ev.text);
      partial = "";
      // Suggestions from what the caller said, into fields the agent has not set by hand.
      clearTimeout(suggestTimer);
      suggestTimer = setTimeout(function () { suggestFrom(transcriptLines.join("，"), true); }, 300);
    } else { partial = ev.text || ""; }
    showTranscript();
  }

  function formBody(names) {
    var f = $("case-form"), body = {};
    names.forEach(function (k) { body[k] = f.elements[k] ? f.elements[k].value : ""; });
    return body;
  }
  var CASE_FIELDS = ["call_id", "channel", "reporter_phone", "kind", "description", "category", "address", "grid_cell", "case_type"];
  function post(url, body, ok) {
    clearErrors();
    return hotlineApi("POST", url, body).then(function (r) {
      if (r.status >= 200 && r.status < 300) ok(r.body); else showErrors(r.body);
    }, function () { message("网络错误，请重试"); });
  }
  // -- 识别: suggestions from the description (or the transcript) --------------------------------------
  function suggest() { return suggestFrom($("f-description").value, false); }
  function suggestFrom(text, quiet) {
    if (!text) return;
    var done = function (b) {
      var chips = $("category-chips"); chips.innerHTML = "";
      (b.candidates || []).forEach(function (c) {
        var chip = el("button", "chip", c.name + " · " + ({component: "部件", matter: "事项"}[c.kind] || c.kind));
        chip.type = "button"; chip.title = c.label;
        chip.onclick = function () { pickCategory(c); touched.category = true; };
        chips.appendChild(chip);
      });
      if (b.category && !touched.category) pickCategory(b.category);
      if ((b.address || b.grid_cell) && !touched.place) {
        var place = (b.places && b.places[0]) || {};
        var address = b.address || $("f-address").value;
        $("f-place").picker.set(b.grid_cell || "", address, {grid_name: place.grid_name || ""});
        // The suggester knows the cell's ID; the agent reads cells by name (单元网格：梅园新村 3201…).
        if (b.grid_cell && !place.grid_name) {
          hotlineApi("GET", "/api/reference/grid_cells?limit=1&q=" + encodeURIComponent(b.grid_cell)).then(function (r) {
            var cell = r.status === 200 && r.body[0];
            if (cell && cell.grid_cell === b.grid_cell && !touched.place && $("f-place").picker.value() === b.grid_cell)
              $("f-place").picker.set(b.grid_cell, undefined, {grid_name: cell.grid_name});  // the box keeps its text
          }, function () {});
        }
      }
      if (b.urgency && b.urgency.case_type) $("f-case-type").value = b.urgency.case_type;
      if (b.phones && b.phones.length && !$("f-phone").value) $("f-phone").value = b.phones[0];
      var extra = b.urgency && b.urgency.case_type === "urgent" ? "；可能紧急（" + (b.urgency.words || []).join("、") + "）" : "";
      $("suggest-result").textContent = (b.message || "") + extra;
      departmentHint();
    };
    if (quiet) {
      return hotlineApi("POST", "/api/desk/suggest", {text: text}).then(function (r) { if (r.status === 200) done(r.body); }, function () {});
    }
    return post("/api/desk/suggest", {text: text}, done);
  }
  function pickCategory(c) {
    var kindLabel = {component: "部件", matter: "事项"}[c.kind] || c.kind;
    $("f-category").picker.set(c.key, c.name, {kind: c.kind, badge: kindLabel, detail: c.code + " · " + (c.class_name || "")});
  }
  $("btn-suggest").onclick = function () { suggest(); };
  // Typing the description is enough: once the agent pauses, suggestions fill what is still empty.
  var typingTimer = null;
  $("f-description").addEventListener("input", function () {
    clearTimeout(typingTimer);
    var text = this.value.trim();
    if (text.length >= 6) typingTimer = setTimeout(function () { suggestFrom(text, true); }, 900);
  });
  $("f-category").addEventListener("picked", function () { touched.category = true; departmentHint(); });
  $("f-place").addEventListener("picked", function () { touched.place = true; departmentHint(); });
  // The department the routing rules would send this to, for the agent's information.
  function departmentHint() {
    var f = $("case-form");
    var url = "/api/reference/departments?category=" + encodeURIComponent(f.elements.category.value) +
      "&grid_cell=" + encodeURIComponent(f.elements.grid_cell.value);
    if (!f.elements.category.value) { $("f-dept-hint").textContent = ""; return; }
    hotlineApi("GET", url).then(function (r) {
      var d = (r.body.departments || []).filter(function (x) { return x.code === r.body.suggested; })[0];
      $("f-dept-hint").textContent = d ? "建议处置部门：" + d.name : "";
    }, function () {});
  }
  // -- 登记案卷 -----------------------------------------------------------------------------------
  $("case-form").onsubmit = function (e) {
    e.preventDefault();
    post("/api/desk/cases", formBody(CASE_FIELDS), function (b) {
      savedNumber = b.number; saved("已登记案卷", b);
    });
  };
  // -- 直办 ----------------------------------------------------------------------------------------
  $("btn-answer").onclick = function () {
    var body = formBody(CASE_FIELDS); body.kind = "consultation"; body.answer = $("f-answer").value;
    post("/api/desk/answer", body, function (b) {
      savedNumber = b.number; $("f-kind").value = "consultation"; saved("已直办，咨询案卷", b);
    });
  };
  // -- 关联已有案卷 --------------------------------------------------------------------------------
  $("f-link-select").onchange = function () { if (this.value) $("f-link").picker.set(this.value, this.value); };
  $("btn-link").onclick = function () {
    post("/api/desk/link", {call_id: $("f-call-id").value, case_number: $("f-link").picker.value(),
                            reporter_phone: $("f-phone").value}, function (b) {
      savedNumber = b.number; saved(b.call_linked ? "本次来电已关联到案卷" : "已记下案卷", b);
    });
  };
  // -- 预约回拨: day and half-hour lists (YYYY-MM-DD HH:MM, never a locale's mm/dd/yyyy) ---------------
  var WEEK = "日一二三四五六";
  function fillDueDays() {
    var day = $("f-due-day"), time = $("f-due-time"); day.innerHTML = ""; time.innerHTML = "";
    var now = new Date();
    for (var i = 0; i < 8; i++) {
      var d = new Date(now.getFullYear(), now.getMonth(), now.getDate() + i);
      var iso = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
      // Short enough for the select's width at 1366 px: 12月8日 周二 今天 (the value stays ISO).
      day.appendChild(option(iso, (d.getMonth() + 1) + "月" + d.getDate() + "日 周" + WEEK.charAt(d.getDay()) +
        (i === 0 ? " 今天" : i === 1 ? " 明天" : "")));
    }
    for (var h = 8; h <= 20; h++) { ["00", "30"].forEach(function (m) { time.appendChild(option(pad(h) + ":" + m, pad(h) + ":" + m)); }); }
    // An hour from now; before 08:00 that is 09:00 today, after the last slot 09:00 tomorrow.
    var next = new Date(now.getTime() + 60 * 60 * 1000);
    var slot = next.getMinutes() <= 30 ? pad(next.getHours()) + ":30" : pad(next.getHours() + 1) + ":00";
    if (next.getDate() !== now.getDate() || slot > "20:30") { time.value = "09:00"; day.selectedIndex = 1; }
    else if (slot < "09:00") { time.value = "09:00"; }
    else { time.value = slot; }
  }
  $("btn-callback").onclick = function () {
    var body = {call_id: $("f-call-id").value, number: $("f-phone").value,
                due_at: $("f-due-day").value + "T" + $("f-due-time").value};
    if (savedNumber) body.case_number = savedNumber;
    post("/api/desk/callback", body, function (b) { saved(b.message || "已预约回拨", null); });
  };
  // -- keyboard: Alt+R ready, Alt+H hang up, Alt+P hold/resume, Alt+M mute, Alt+T transfer, Alt+S 识别, Alt+Enter save
  document.addEventListener("keydown", function (e) {
    if (!e.altKey) return;
    var key = e.key.toLowerCase();
    if (key === "r") { e.preventDefault(); $("btn-ready").click(); return; }
    if ($("pop").hidden) return;
    var map = {h: "btn-hangup", p: "btn-hold", m: "btn-mute", t: "btn-transfer-open", s: "btn-suggest"};
    if (key === "enter") { e.preventDefault(); $("btn-register").click(); return; }
    if (map[key] && !$(map[key]).disabled) { e.preventDefault(); $(map[key]).click(); }
  });

  hotlineLive(function (ev) {
    if (ev.type === "screen_pop") pop(ev);
    else if (ev.type === "screen_pop_history" && $("pop").dataset.callId === ev.call_id) history(ev);
    else if (ev.type === "agent_state") showStatus(ev);
    else if (ev.type === "wrap_up_started") { call.until = localTime(ev.until); setCallState("ended"); tick(); }
    else if (ev.type === "live_transcript" && $("pop").dataset.callId === ev.call_id) liveTranscript(ev);
    else if (ev.type === "screen_pop_cancelled" && $("pop").dataset.callId === ev.call_id && $("saved").hidden) { $("pop").hidden = true; $("idle").hidden = false; }
  });
  showStatus({status: $("agent-status").dataset.status, since: $("agent-status").dataset.since});
})();
