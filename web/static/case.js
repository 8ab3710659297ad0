// Case page: each recording's transcript follows its player — click a line to play from
// there; the line being heard is highlighted and kept in view.
(function () {
  document.querySelectorAll("section.recording").forEach(function (rec) {
    var audio = rec.querySelector("audio"), lines = Array.prototype.slice.call(rec.querySelectorAll("ol.transcript li"));
    if (!audio || !lines.length) return;
    var list = rec.querySelector("ol.transcript"), current = null;
    lines.forEach(function (li) {
      li.addEventListener("click", function () {
        audio.currentTime = Number(li.dataset.start);
        var p = audio.play(); if (p && p.catch) p.catch(function () {});
        highlight(li);
      });
    });
    function highlight(li) {
      if (li === current) return;
      if (current) current.classList.remove("current");
      current = li;
      if (!li) return;
      li.classList.add("current");
      var top = li.offsetTop - list.offsetTop;
      if (top < list.scrollTop || top + li.offsetHeight > list.scrollTop + list.clientHeight) {
        list.scrollTop = Math.max(0, top - list.clientHeight / 3);
      }
    }
    function at(t) {
      var found = null;
      for (var i = 0; i < lines.length; i++) {
        var s = Number(lines[i].dataset.start), e = Number(lines[i].dataset.end);
        if (t >= s && t < e) { found = lines[i]; break; }
        if (t >= s) found = lines[i];  // between lines: keep the last one started
      }
      return found;
    }
    audio.addEventListener("timeupdate", function () { highlight(at(audio.currentTime)); });
    audio.addEventListener("seeked", function () { highlight(at(audio.currentTime)); });
  });
})();
