(function () {
  var LABELS = {logged_out: "未签入", ready: "示闲", ringing: "振铃中", on_call: "通话中", wrap_up: "话后处理", paused: "示忙", dialing: "外呼中"};
  var QUEUES = {report: "反映问题", consult: "咨询", general: "人工服务"};
  function pct(x) { return x === null || x === undefined ? "—" : Math.round(x * 100) + "%"; }
  function num(x) { return x === null || x === undefined ? "—" : Math.round(x); }
  function row(cells) { var tr = document.createElement("tr"); cells.forEach(function (c) { var td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }); return tr; }
  var pending = false;
  function refresh() {
    if (pending) return; pending = true;
    hotlineApi("GET", "/api/wallboard").then(function (r) {
      pending = false;
      if (r.status !== 200) return;
      var b = r.body, q = document.querySelector("#queues tbody"), a = document.querySelector("#agents tbody");
      q.innerHTML = ""; a.innerHTML = "";
      b.queues.forEach(function (s) {
        var tr = row([QUEUES[s.queue] || s.queue, s.waiting, num(s.longest_wait_s), s.answered, s.abandoned, pct(s.answer_rate), pct(s.service_level_15s), num(s.asa_s), num(s.aht_s)]);
        tr.dataset.queue = s.queue; q.appendChild(tr);
      });
      b.agents.forEach(function (s) {
        var tr = row([s.agent, s.extension, (LABELS[s.status] || s.status) + (s.pause_reason ? "（" + s.pause_reason + "）" : ""), num(s.time_in_status_s), s.calls_taken]);
        tr.dataset.agent = s.agent; tr.dataset.status = s.status;
        var td = document.createElement("td");
        if (s.status === "on_call" && s.call) {
          var btn = document.createElement("button"); btn.type = "button"; btn.textContent = "监听"; btn.className = "listen";
          btn.onclick = function () {
            hotlineApi("POST", "/api/wallboard/listen", {call_id: s.call}).then(function (r) {
              var m = document.getElementById("board-message"); m.textContent = r.body.message || ""; m.hidden = false;
            });
          };
          td.appendChild(btn);
        }
        tr.appendChild(td); a.appendChild(tr);
      });
      var c = b.cases_today || {}; document.getElementById("cases-today").textContent = "今日新增案卷 " + (c.total || 0) + " 件，其中已受理 " + (c.accepted || 0) + " 件";
    });
  }
  refresh(); setInterval(refresh, 5000);
  hotlineLive(function (ev) { if (ev.type === "wallboard" || ev.type === "case_created") refresh(); });
})();
