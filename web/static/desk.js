(function () {
  var LABELS = {logged_out: "未签入", ready: "示闲", ringing: "振铃中", on_call: "通话中", wrap_up: "话后处理", paused: "示忙", dialing: "外呼中"};
  var $ = function (id) { return document.getElementById(id); };
  function message(text) { var m = $("desk-message"); m.textContent = text || ""; m.hidden = !text; }
  function showStatus(s) {
    if (!s) return;
    var el = $("agent-status"); el.dataset.status = s.status; el.textContent = LABELS[s.status] || s.status;
  }
  function setState(state, reason) {
    hotlineApi("POST", "/api/desk/state", {state: state, reason: reason}).then(function (r) {
      if (r.status === 200) { message(""); showStatus(r.body); } else { message(r.body.message || "操作失败"); }
    });
  }
  $("btn-ready").onclick = function () { setState("ready"); };
  $("btn-pause").onclick = function () { setState("paused", $("pause-reason").value); };
  $("btn-logout").onclick = function () { setState("logged_out"); };
  function li(text) { var e = document.createElement("li"); e.textContent = text; return e; }
  function pop(ev) {
    $("pop").hidden = false; $("idle").hidden = true; $("saved").hidden = true;
    $("pop").dataset.callId = ev.call_id;
    $("pop-caller").textContent = ev.caller || "未知号码";
    $("pop-queue").textContent = ev.queue ? "（" + ev.queue + " 队列）" : "";
    $("pop-ivr").textContent = (ev.ivr_path || []).join(" → ") || "—";
    var calls = $("pop-calls"); calls.innerHTML = "";
    (ev.earlier_calls || []).forEach(function (c) { calls.appendChild(li(c.started_at.replace("T", " ").slice(0, 19) + " " + (c.did || ""))); });
    if (!calls.children.length) calls.appendChild(li("无"));
    var cases = $("pop-cases"); cases.innerHTML = "";
    (ev.earlier_cases || []).forEach(function (c) { cases.appendChild(li(c.number + " " + c.status + " " + c.description)); });
    if (!cases.children.length) cases.appendChild(li("无"));
    $("f-call-id").value = ev.call_id; $("f-channel").value = ev.did || "12319";
    $("f-phone").value = ev.caller || ""; $("f-description").value = ev.description || "";
  }
  $("case-form").onsubmit = function (e) {
    e.preventDefault();
    var f = e.target, body = {};
    ["call_id", "channel", "reporter_phone", "kind", "description"].forEach(function (k) { body[k] = f.elements[k].value; });
    document.querySelectorAll(".field-error").forEach(function (x) { x.textContent = ""; });
    hotlineApi("POST", "/api/desk/cases", body).then(function (r) {
      if (r.status === 201) {
        $("saved").textContent = "已登记案卷 " + r.body.number; $("saved").hidden = false; message("");
      } else {
        message(r.body.message || "保存失败");
        Object.keys(r.body.fields || {}).forEach(function (k) {
          var el = document.querySelector('.field-error[data-for="' + k + '"]'); if (el) el.textContent = r.body.fields[k];
        });
      }
    });
  };
  hotlineLive(function (ev) {
    if (ev.type === "screen_pop") pop(ev);
    else if (ev.type === "agent_state") showStatus(ev);
    else if (ev.type === "screen_pop_cancelled" && $("pop").dataset.callId === ev.call_id && $("saved").hidden) { $("pop").hidden = true; $("idle").hidden = false; }
  });
})();
