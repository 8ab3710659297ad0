// The wall display (/wallboard): live queue and agent figures from /api/wallboard, charts of
// the day from /api/wallboard/today (Chart.js, served from /static/vendor), colours from the
// [wallboard] thresholds, a full-screen mode for a TV (button, or /wallboard?tv=1).
(function () {
  var LABELS = {logged_out: "未签入", ready: "示闲", ringing: "振铃中", on_call: "通话中", wrap_up: "话后处理", paused: "示忙", dialing: "外呼中"};
  var PAUSE = {break: "休息", meal: "用餐", meeting: "会议", training: "培训", no_answer: "未接听", other: "其他"};
  var QUEUES = {report: "反映问题", consult: "咨询", general: "人工服务"};
  var T = {}, NAMES = {}, ANSWERED = null, agents = [], fetchedAt = 0;

  function pct(x) { return x === null || x === undefined ? "—" : Math.round(x * 100) + "%"; }
  function mmss(s) {
    if (s === null || s === undefined) return "—";
    s = Math.max(0, Math.floor(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = String(m).padStart(2, "0") + ":" + String(r).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }
  // "high is bad" (waiting, longest wait, abandon rate) or "low is bad" (service level).
  function level(value, amber, red, lowIsBad) {
    if (value === null || value === undefined || amber === undefined) return "";
    if (lowIsBad) return value < red ? "red" : value < amber ? "amber" : "green";
    return value >= red ? "red" : value >= amber ? "amber" : "green";
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td"); td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td); return td;
  }

  function drawQueues(queues) {
    var body = document.querySelector("#queues tbody"); body.innerHTML = "";
    queues.forEach(function (s) {
      var tr = document.createElement("tr"); tr.dataset.queue = s.queue;
      cell(tr, QUEUES[s.queue] || s.queue, "wb-name");
      cell(tr, s.waiting, "big lvl-" + level(s.waiting, T.waiting_amber, T.waiting_red));
      cell(tr, mmss(s.longest_wait_s), "big lvl-" + level(s.longest_wait_s, T.longest_wait_amber_s, T.longest_wait_red_s));
      cell(tr, s.answered, "big");
      cell(tr, s.abandoned, "big");
      cell(tr, pct(s.abandon_rate), "big lvl-" + level(s.abandon_rate, T.abandon_rate_amber, T.abandon_rate_red));
      cell(tr, pct(s.service_level_15s), "big lvl-" + level(s.service_level_15s, T.service_level_amber, T.service_level_red, true));
      cell(tr, mmss(s.asa_s), "mid");
      cell(tr, mmss(s.aht_s), "mid");
      body.appendChild(tr);
    });
  }

  function stateText(s) { return (LABELS[s.status] || s.status) + (s.pause_reason ? "（" + (PAUSE[s.pause_reason] || s.pause_reason) + "）" : ""); }

  function drawAgents() {
    var body = document.querySelector("#agents tbody"); body.innerHTML = "";
    var elapsed = (Date.now() - fetchedAt) / 1000, counts = {};
    agents.forEach(function (s) {
      counts[s.status] = (counts[s.status] || 0) + 1;
      var tr = document.createElement("tr"); tr.dataset.agent = s.agent; tr.dataset.status = s.status;
      var name = cell(tr, NAMES[s.agent] || s.agent, "wb-name"); name.title = s.agent;
      cell(tr, s.extension);
      var st = cell(tr, ""); var pill = document.createElement("span");
      pill.className = "wb-state st-" + s.status; pill.textContent = stateText(s); st.appendChild(pill);
      var timer = cell(tr, "", "mono"); timer.dataset.base = s.time_in_status_s; timer.dataset.status = s.status;
      tickTimer(timer, elapsed);
      cell(tr, ANSWERED ? (ANSWERED[s.agent] || 0) : s.calls_taken, "num");  // today's, from the queue log
      var td = document.createElement("td");
      if (s.status === "on_call" && s.call) {
        var btn = document.createElement("button"); btn.type = "button"; btn.textContent = "监听"; btn.className = "listen btn";
        btn.onclick = function () {
          hotlineApi("POST", "/api/wallboard/listen", {call_id: s.call}).then(function (r) {
            var m = document.getElementById("board-message"); m.textContent = r.body.message || ""; m.hidden = false;
          });
        };
        td.appendChild(btn);
      }
      tr.appendChild(td); body.appendChild(tr);
    });
    var parts = [];
    ["on_call", "ready", "wrap_up", "paused", "ringing"].forEach(function (k) { if (counts[k]) parts.push(LABELS[k] + " " + counts[k]); });
    document.getElementById("agents-summary").textContent = parts.join(" · ");
  }

  // Time in state as mm:ss, counting on between refreshes; amber / red past the thresholds.
  function tickTimer(td, elapsed) {
    var status = td.dataset.status, t = Number(td.dataset.base) + (status === "logged_out" ? 0 : elapsed);
    var lv = (status === "ready" || status === "logged_out") ? "" : level(t, T.agent_state_amber_s, T.agent_state_red_s);
    td.textContent = status === "logged_out" ? "—" : mmss(t);
    td.className = "mono" + (lv ? " lvl-" + lv : "");
  }
  function tickAgents() {
    var elapsed = (Date.now() - fetchedAt) / 1000;
    document.querySelectorAll("#agents td[data-base]").forEach(function (td) { tickTimer(td, elapsed); });
  }

  var pending = false;
  function refresh() {
    if (pending) return; pending = true;
    hotlineApi("GET", "/api/wallboard").then(function (r) {
      pending = false;
      if (r.status !== 200) return;
      var b = r.body;
      drawQueues(b.queues);
      agents = b.agents; fetchedAt = Date.now(); drawAgents();
      var c = b.cases_today || {};
      document.getElementById("cases-today").textContent = "今日新增案卷 " + (c.total || 0) + " 件，其中已受理 " + (c.accepted || 0) + " 件";
    }, function () { pending = false; });
  }

  var charts = {};
  function chartsOk() { return typeof window.Chart === "function"; }
  function drawCharts(day) {
    var labels = day.intervals.map(function (i) { return i.start; });
    var offered = day.intervals.map(function (i) { return i.offered; });
    var answered = day.intervals.map(function (i) { return i.answered; });
    var abandoned = day.intervals.map(function (i) { return i.abandoned; });
    var slCum = day.intervals.map(function (i) { return i.service_level_cum === null ? null : Math.round(i.service_level_cum * 100); });
    var sl = day.intervals.map(function (i) { return i.service_level === null ? null : Math.round(i.service_level * 100); });
    var target = Math.round((T.service_level_amber || 0.8) * 100);
    document.getElementById("wallboard").dataset.intervals = String(labels.length);
    document.getElementById("wallboard").dataset.offered = String(offered.reduce(function (a, b) { return a + b; }, 0));
    if (!chartsOk()) return;
    var grid = {color: "rgba(255,255,255,.08)"}, ticks = {color: "#b9c6d6", font: {size: 13}};
    var common = {responsive: true, maintainAspectRatio: false, animation: false,
      plugins: {legend: {labels: {color: "#dfe7f1", font: {size: 13}, boxWidth: 14, boxHeight: 10}}},
      scales: {x: {grid: grid, ticks: Object.assign({maxRotation: 0, autoSkipPadding: 12}, ticks)}}};
    if (!charts.calls) {
      charts.calls = new Chart(document.getElementById("chart-calls"), {type: "bar", data: {labels: labels, datasets: [
        {label: "来电", data: offered, backgroundColor: "#4a90d9", maxBarThickness: 22},
        {label: "接通", data: answered, backgroundColor: "#2fb36b", maxBarThickness: 22},
        {label: "放弃", data: abandoned, backgroundColor: "#e0533d", maxBarThickness: 22}]},
        options: Object.assign({}, common, {scales: Object.assign({}, common.scales, {y: {beginAtZero: true, grid: grid, ticks: Object.assign({precision: 0}, ticks)}})})});
      charts.sl = new Chart(document.getElementById("chart-sl"), {type: "line", data: {labels: labels, datasets: [
        // clip: a service level of 100 % sits on the chart's top edge; draw its point whole.
        {label: "全天累计 %", data: slCum, borderColor: "#f5c542", backgroundColor: "#f5c542", spanGaps: true, tension: .2, pointRadius: 3, clip: 6},
        {label: "本时段 %", data: sl, borderColor: "#7fb2e5", backgroundColor: "#7fb2e5", borderDash: [4, 4], spanGaps: false, pointRadius: 2, borderWidth: 1.5, clip: 6},
        {label: "目标 " + target + "%", data: labels.map(function () { return target; }), borderColor: "rgba(47,179,107,.8)", pointRadius: 0, borderWidth: 1}]},
        options: Object.assign({}, common, {layout: {padding: {top: 6}}, scales: Object.assign({}, common.scales, {y: {min: 0, max: 100, grid: grid, ticks: Object.assign({callback: function (v) { return v + "%"; }}, ticks)}})})});
    } else {
      charts.calls.data.labels = labels; charts.sl.data.labels = labels;
      charts.calls.data.datasets[0].data = offered; charts.calls.data.datasets[1].data = answered; charts.calls.data.datasets[2].data = abandoned;
      charts.sl.data.datasets[0].data = slCum; charts.sl.data.datasets[1].data = sl; charts.sl.data.datasets[2].data = labels.map(function () { return target; });
      charts.calls.update("none"); charts.sl.update("none");
    }
  }
  function refreshDay() {
    return hotlineApi("GET", "/api/wallboard/today").then(function (r) {
      if (r.status !== 200) return;
      T = r.body.thresholds || {}; NAMES = r.body.names || {}; ANSWERED = r.body.answered_by_agent || {};
      drawCharts(r.body);
      if (agents.length) drawAgents();
    });
  }

  function clock() {
    var d = new Date(), p = function (n) { return String(n).padStart(2, "0"); };
    document.getElementById("wb-clock").textContent = d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function tvMode(on) { document.body.classList.toggle("tv", on); }
  document.getElementById("wb-fullscreen").onclick = function () {
    if (document.fullscreenElement) { document.exitFullscreen(); return; }
    tvMode(true);
    var el = document.documentElement;
    if (el.requestFullscreen) el.requestFullscreen().catch(function () {});
  };
  document.addEventListener("fullscreenchange", function () {
    if (!document.fullscreenElement && !/[?&]tv=1/.test(location.search)) tvMode(false);
  });
  if (/[?&]tv=1/.test(location.search)) tvMode(true);

  clock();
  refreshDay().then(refresh, refresh);
  setInterval(refresh, 5000);
  setInterval(refreshDay, 60000);
  setInterval(function () { clock(); tickAgents(); }, 1000);
  // The day's figures (charts, answered per agent) follow the live events too, at most every 3 s.
  var dayTimer = null;
  function refreshDaySoon() { if (!dayTimer) dayTimer = setTimeout(function () { dayTimer = null; refreshDay(); }, 3000); }
  hotlineLive(function (ev) {
    if (ev.type === "wallboard" || ev.type === "case_created") refresh();
    if (ev.type === "wallboard") refreshDaySoon();
  });
})();
