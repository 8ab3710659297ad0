// callbacks.html: moved out of the template (the CSP allows no inline script).
(function () {
  var table = document.getElementById("callbacks");
  if (!table) return;
  table.addEventListener("click", function (e) {
    var btn = e.target.closest("button[data-act]");
    if (!btn) return;
    var tr = btn.closest("tr"), act = btn.dataset.act, msg = tr.querySelector('[data-role="msg"]'), body = {};
    if (act === "reschedule") {
      body.due_at = tr.querySelector('[data-role="due-input"]').value;
      if (!body.due_at) { msg.className = "cb-msg field-error"; msg.textContent = "请先选择改期时间"; return; }
    }
    if (act === "cancel" && !confirm("确定取消这次回拨吗？")) return;
    btn.disabled = true;
    hotlineApi("POST", "/api/callbacks/" + encodeURIComponent(tr.dataset.id) + "/" + act, body).then(function (r) {
      btn.disabled = false;
      if (r.status !== 200) { msg.className = "cb-msg field-error"; msg.textContent = r.body.message || "操作失败"; return; }
      var c = r.body, st = tr.querySelector('[data-role="status"]');
      st.textContent = c.status_label; st.className = "cb-status cb-status-" + c.status; tr.dataset.status = c.status;
      tr.querySelector('[data-role="due"]').textContent = c.due_at_text || "—";
      tr.querySelector('[data-role="result"]').textContent = c.result_label || "—";
      var cell = tr.querySelector('[data-role="attempts"]'); cell.innerHTML = "";
      if (c.attempts.length) {
        var ol = document.createElement("ol"); ol.className = "attempts";
        c.attempts.forEach(function (a) { var li = document.createElement("li"); li.textContent = a.started_at_text + " " + a.outcome_label; ol.appendChild(li); });
        cell.appendChild(ol);
      } else { cell.innerHTML = '<span class="muted">尚未拨打</span>'; }
      tr.querySelectorAll("[data-act]").forEach(function (b) {
        b.style.display = c.actions[b.dataset.act.replace("-", "_")] ? "" : "none";
      });
      var input = tr.querySelector('[data-role="due-input"]'); if (input) input.style.display = c.actions.reschedule ? "" : "none";
      msg.className = "cb-msg ok"; msg.textContent = c.message || "已完成";
    }, function () { btn.disabled = false; msg.className = "cb-msg field-error"; msg.textContent = "网络错误，请重试"; });
  });
})();
