// worklist.html: moved out of the template (the CSP allows no inline script).
(function () {
  var form = document.getElementById("case-filters");
  if (!form) return;
  function submit() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (String(v).trim() !== "") params.append(k, String(v).trim()); });
    var qs = params.toString();
    location.href = form.getAttribute("action") + (qs ? "?" + qs : "");
  }
  form.querySelectorAll("select, input[type=date]").forEach(function (el) { el.addEventListener("change", submit); });
  form.addEventListener("picked", submit);
  form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });
})();
