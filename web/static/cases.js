// cases.html: moved out of the template (the CSP allows no inline script).
(function () {
  var form = document.getElementById("case-filters");
  // Selects and dates apply at once; empty fields stay out of the URL so a link stays short.
  form.querySelectorAll("select, input[type=date]").forEach(function (el) { el.addEventListener("change", function () { submit(); }); });
  form.addEventListener("picked", function () { submit(); });
  form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });
  function submit() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (String(v).trim() !== "") params.append(k, String(v).trim()); });
    var qs = params.toString();
    location.href = "/cases" + (qs ? "?" + qs : "");
  }
  // New cases appear live, but only on the first page of an unfiltered, newest-first list.
  var plain = !/[?&](status|category|department|deadline|channel|from|to|q|sort|page)=/.test(location.search);
  hotlineLive(function (ev) { if (plain && (ev.type === "case_created" || ev.type === "case_changed")) location.reload(); });
})();
