(function () {
  var LABELS = {logged_out: "未签入", ready: "示闲", ringing: "振铃中", on_call: "通话中", wrap_up: "话后处理", paused: "示忙", dialing: "外呼中"};
  var $ = function (id) { return document.getElementById(id); };
  var savedNumber = null;  // the case this call was saved as or linked to
  function message(text) { var m = $("desk-message"); m.textContent = text || ""; m.hidden = !text; }
  function showStatus(s) {
    if (!s) return;
    var el = $("agent-status"); el.dataset.status = s.status; el.textContent = LABELS[s.status] || s.status;
  }
  function setState(state, reason) {
    hotlineApi("POST", "/api/desk/state", {state: state, reason: reason}).then(function (r) {
      if (r.status === 200) { message(""); showStatus(r.body); } else { message(r.body.message || "操作失败"); }
    }, function () { message("网络错误，请重试"); });
  }
  $("btn-ready").onclick = function () { setState("ready"); };
  $("btn-pause").onclick = function () { setState("paused", $("pause-reason").value); };
  $("btn-logout").onclick = function () { setState("logged_out"); };
  function ivrStep(step) {
    var MENU = {"1": "按1 反映问题", "2": "按2 查询进度", "3": "按3 咨询", "0": "按0 人工", "9": "按9 重听", "#": "按#"};
    if (MENU[step]) return MENU[step];
    if (step.indexOf("queue:") === 0) return "进入排队";
    if (step.indexOf("agent:") === 0) return "转坐席 " + step.slice(6);
    if (step.indexOf("overflow:") === 0) return "溢出";
    if (step === "callback") return "预约回拨";
    return /^[0-9*#]$/.test(step) ? "按" + step : step;
  }
  function li(text) { var e = document.createElement("li"); e.textContent = text; return e; }
  function option(value, text) { var o = document.createElement("option"); o.value = value; o.textContent = text; return o; }
  function clearErrors() { document.querySelectorAll(".field-error").forEach(function (x) { x.textContent = ""; }); }
  function showErrors(body) {
    var fields = (body && body.fields) || {}, placed = false;
    Object.keys(fields).forEach(function (k) {
      var el = document.querySelector('.field-error[data-for="' + k + '"]');
      if (el) { el.textContent = fields[k]; placed = true; }
    });
    message((body && body.message) || "保存失败");
    return placed;
  }
  function saved(text) {
    $("saved").textContent = text; $("saved").hidden = false; message("");
    // Saving ends wrap-up: show the agent's new state even if the live event is missed.
    hotlineApi("GET", "/api/desk/status").then(function (r) { if (r.status === 200) showStatus(r.body); }, function () {});
  }
  function resetSuggestions() {
    var sel = $("f-category"); sel.innerHTML = ""; sel.appendChild(option("", "（未指定）"));
    $("f-address").value = ""; $("f-grid").value = ""; $("f-grid-text").textContent = "—";
    $("f-case-type").value = "normal"; $("suggest-result").textContent = "";
  }
  function pop(ev) {
    $("pop").hidden = false; $("idle").hidden = true; $("saved").hidden = true; savedNumber = null;
    clearErrors(); message("");
    $("pop").dataset.callId = ev.call_id;
    $("pop-caller").textContent = ev.caller || "未知号码";
    var QUEUES = {report: "反映问题", consult: "咨询", general: "人工服务"};
    $("pop-queue").textContent = ev.callback ? "（预约回拨）" : (ev.queue ? "（" + (QUEUES[ev.queue] || ev.queue) + "队列）" : "");
    $("pop-callback").hidden = !ev.callback;
    $("pop-ivr").textContent = (ev.ivr_path || []).map(ivrStep).join(" → ") || "—";
    history(ev);
    $("f-call-id").value = ev.call_id; $("f-channel").value = ev.did || "12319";
    $("f-phone").value = ev.caller || ""; $("f-description").value = ev.description || "";
    $("f-kind").value = "report"; $("f-answer").value = ""; $("f-link-number").value = ""; $("f-due-at").value = "";
    resetSuggestions();
    if (ev.description) suggest();
  }
  // The caller's earlier calls and cases: with the pop, or just after it (screen_pop_history).
  function history(ev) {
    var pending = ev.history_pending;
    var calls = $("pop-calls"); calls.innerHTML = "";
    (ev.earlier_calls || []).forEach(function (c) { calls.appendChild(li(c.started_at.replace("T", " ").slice(0, 19) + " " + (c.did || ""))); });
    if (!calls.children.length) calls.appendChild(li(pending ? "查询中…" : "无"));
    var cases = $("pop-cases"), linkSel = $("f-link-select"); cases.innerHTML = ""; linkSel.innerHTML = "";
    linkSel.appendChild(option("", "选择历史案卷…"));
    (ev.earlier_cases || []).forEach(function (c) {
      var label = c.number + " " + (c.status_label || c.status) + " " + c.description;
      cases.appendChild(li(label)); linkSel.appendChild(option(c.number, label.slice(0, 40)));
    });
    if (!cases.children.length) cases.appendChild(li(pending ? "查询中…" : "无"));
  }
  function formBody(names) {
    var f = $("case-form"), body = {};
    names.forEach(function (k) { body[k] = f.elements[k].value; });
    return body;
  }
  var CASE_FIELDS = ["call_id", "channel", "reporter_phone", "kind", "description", "category", "address", "grid_cell", "case_type"];
  function post(url, body, ok) {
    clearErrors();
    return hotlineApi("POST", url, body).then(function (r) {
      if (r.status >= 200 && r.status < 300) ok(r.body); else showErrors(r.body);
    }, function () { message("网络错误，请重试"); });
  }
  // -- 识别: suggestions from the description -------------------------------------------------
  function suggest() {
    var text = $("f-description").value;
    return post("/api/desk/suggest", {text: text}, function (b) {
      var sel = $("f-category"); sel.innerHTML = ""; sel.appendChild(option("", "（未指定）"));
      (b.candidates || []).forEach(function (c) { sel.appendChild(option(c.key, c.label)); });
      if (b.category) sel.value = b.category.key;
      if (b.address && !$("f-address").value) $("f-address").value = b.address;
      if (b.grid_cell) { $("f-grid").value = b.grid_cell; $("f-grid-text").textContent = b.grid_cell; }
      if (b.urgency && b.urgency.case_type) $("f-case-type").value = b.urgency.case_type;
      if (b.phones && b.phones.length && !$("f-phone").value) $("f-phone").value = b.phones[0];
      var extra = b.urgency && b.urgency.case_type === "urgent" ? "；可能紧急（" + (b.urgency.words || []).join("、") + "）" : "";
      $("suggest-result").textContent = (b.message || "") + extra;
    });
  }
  $("btn-suggest").onclick = function () { suggest(); };
  // -- 登记案卷 -----------------------------------------------------------------------------------
  $("case-form").onsubmit = function (e) {
    e.preventDefault();
    post("/api/desk/cases", formBody(CASE_FIELDS), function (b) {
      savedNumber = b.number; saved("已登记案卷 " + b.number);
    });
  };
  // -- 直办 ----------------------------------------------------------------------------------------
  $("btn-answer").onclick = function () {
    var body = formBody(CASE_FIELDS); body.kind = "consultation"; body.answer = $("f-answer").value;
    post("/api/desk/answer", body, function (b) {
      savedNumber = b.number; $("f-kind").value = "consultation"; saved("已直办，咨询案卷 " + b.number);
    });
  };
  // -- 关联已有案卷 --------------------------------------------------------------------------------
  $("f-link-select").onchange = function () { if (this.value) $("f-link-number").value = this.value; };
  $("btn-link").onclick = function () {
    post("/api/desk/link", {call_id: $("f-call-id").value, case_number: $("f-link-number").value}, function (b) {
      savedNumber = b.number; saved(b.message || ("已关联案卷 " + b.number));
    });
  };
  // -- 预约回拨 ------------------------------------------------------------------------------------
  $("btn-callback").onclick = function () {
    var body = {call_id: $("f-call-id").value, number: $("f-phone").value, due_at: $("f-due-at").value};
    if (savedNumber) body.case_number = savedNumber;
    post("/api/desk/callback", body, function (b) { saved(b.message || "已预约回拨"); });
  };
  hotlineLive(function (ev) {
    if (ev.type === "screen_pop") pop(ev);
    else if (ev.type === "screen_pop_history" && $("pop").dataset.callId === ev.call_id) history(ev);
    else if (ev.type === "agent_state") showStatus(ev);
    else if (ev.type === "screen_pop_cancelled" && $("pop").dataset.callId === ev.call_id && $("saved").hidden) { $("pop").hidden = true; $("idle").hidden = false; }
  });
  var tf = document.getElementById("transfer-form");
  if (tf) tf.onsubmit = function (e) {
    e.preventDefault();
    var err = tf.querySelector('[data-for="transfer"]'); err.textContent = "";
    hotlineApi("POST", "/api/desk/transfer", {
      call_id: document.getElementById("pop").dataset.callId, kind: tf.elements.kind.value, target: tf.elements.target.value
    }).then(function (r) { err.textContent = r.status === 202 ? "已转接" : (r.body.message || "转接失败"); });
  };
  function consult(action) {
    var err = tf.querySelector('[data-for="transfer"]'); err.textContent = "";
    var body = {call_id: document.getElementById("pop").dataset.callId, action: action};
    if (action === "start") { body.kind = tf.elements.kind.value === "number" ? "number" : "agent"; body.target = tf.elements.target.value; }
    hotlineApi("POST", "/api/desk/consult", body).then(function (r) { err.textContent = r.body.message || "操作失败"; });
  }
  if (tf) {
    document.getElementById("consult-start").onclick = function () { consult("start"); };
    document.getElementById("consult-complete").onclick = function () { consult("complete"); };
    document.getElementById("consult-cancel").onclick = function () { consult("cancel"); };
  }
})();
