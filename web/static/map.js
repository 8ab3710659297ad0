// /map: cases as markers coloured by deadline (超期 red, 黄灯 amber) or else by status,
// clustered when dense, over the grid-cell outlines; click a marker → the case. The base map
// is the [map] tile server when one is configured, else only the vector data drawn here.
(function () {
  var el = document.getElementById("map");
  var map = L.map(el, {maxZoom: 19, minZoom: 8, zoomSnap: 0.25, zoomControl: true, attributionControl: true});
  var tileUrl = el.dataset.tileUrl, sendVerify = el.dataset.sendVerify === "1";
  if (tileUrl) {
    L.tileLayer(tileUrl, {attribution: el.dataset.tileAttribution || "", maxZoom: 19}).addTo(map);
  }
  map.attributionControl.setPrefix("Leaflet");
  var NEW = {accepted: 1, verifying: 1, verified: 1};
  var DONE = {closed: 1, followed_up: 1, evaluated: 1, declined: 1, void: 1, merged: 1, direct_answered: 1};
  var STREET_COLOURS = ["#dbeafe", "#dcfce7", "#fef9c3", "#fce7f3", "#ede9fe", "#ffedd5"];
  var streets = {};

  function cls(p) {
    if (p.deadline === "overdue") return "dl-overdue";
    if (p.deadline === "yellow") return "dl-yellow";
    if (DONE[p.status]) return "st-done";
    if (NEW[p.status]) return "st-new";
    return "st-open";
  }
  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }

  // Cell names sit in their own pane over the cells and under the markers (a case count is
  // never hidden by a name), near the top of the cell; they go when the cells get too small.
  map.createPane("gridLabels").style.zIndex = 450;
  map.getPane("gridLabels").style.pointerEvents = "none";
  var gridLayer = L.geoJSON(null, {
    style: function (f) {
      var s = f.properties.street;
      if (!(s in streets)) streets[s] = STREET_COLOURS[Object.keys(streets).length % STREET_COLOURS.length];
      return {color: "#64748b", weight: 1, fillColor: streets[s], fillOpacity: 0.55};
    },
    onEachFeature: function (f, layer) {
      layer.bindPopup("<b>" + esc(f.properties.name) + "</b><br>" + esc(f.properties.id) + "<br>" + esc(f.properties.area_name) + " · 监督员 " + esc(f.properties.inspector));
      var b = layer.getBounds(), top = b.getNorth() - (b.getNorth() - b.getSouth()) * 0.06;
      gridLayer.addLayer(L.marker([top, (b.getWest() + b.getEast()) / 2], {pane: "gridLabels", interactive: false, keyboard: false,
        icon: L.divIcon({className: "grid-label", html: "<span>" + esc(f.properties.name || f.properties.id) + "</span>", iconSize: null})}));
    }
  }).addTo(map);
  function labelsByZoom() { el.classList.toggle("labels-off", map.getZoom() < 14.5); }
  map.on("zoomend", labelsByZoom);
  // A cluster takes the colour of its most pressing case: 超期, 黄灯, 待受理/核实, 办理中, else 已办结.
  var RANK = ["dl-overdue", "dl-yellow", "st-new", "st-open", "st-done"];
  var CLUSTER = {"dl-overdue": "cl-overdue", "dl-yellow": "cl-yellow", "st-new": "cl-new", "st-open": "cl-ok", "st-done": "cl-done"};
  var clusters = L.markerClusterGroup({maxClusterRadius: 40, disableClusteringAtZoom: 18, showCoverageOnHover: false,
    iconCreateFunction: function (cluster) {
      var kids = cluster.getAllChildMarkers(), worst = RANK.length - 1;
      kids.forEach(function (m) { worst = Math.min(worst, RANK.indexOf(m.options.cls)); });
      return L.divIcon({html: "<div><span>" + kids.length + "</span></div>", className: "marker-cluster " + CLUSTER[RANK[worst]],
                        iconSize: L.point(44, 44)});
    }});
  map.addLayer(clusters);

  var streetLayer = L.geoJSON(null, {style: {color: "#0b4f8a", weight: 3, fill: false}, interactive: false}).addTo(map);
  function loadGrid() {
    fetch("/api/geo/areas?level=street", {credentials: "same-origin"}).then(function (r) { return r.json(); })
      .then(function (fc) { streetLayer.addData(fc); streetLayer.bringToFront(); el.dataset.streets = String(fc.features.length); })
      .catch(function () {});
    return fetch("/api/geo/grid", {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (fc) {
      gridLayer.addData(fc);
      if (fc.features.length) map.fitBounds(gridLayer.getBounds(), {padding: [10, 10]});
      else map.setView([32.05, 118.78], 14);
      labelsByZoom();
    });
  }
  function loadCases() {
    var form = document.getElementById("map-filters");
    var params = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (v) params.set(k, v); });
    var query = params.toString();
    history.replaceState(null, "", "/map" + (query ? "?" + query : ""));
    params.set("limit", "5000");
    return fetch("/api/geo/cases?" + params, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (fc) {
      clusters.clearLayers();
      var markers = (fc.features || []).map(function (f) {
        var p = f.properties, c = f.geometry.coordinates;
        var k = cls(p);
        var icon = L.divIcon({className: "mk " + k + (p.located === "grid" ? " located-grid" : ""), iconSize: [18, 18]});
        var m = L.marker([c[1], c[0]], {icon: icon, title: p.number + " " + p.status_label, deadline: p.deadline, cls: k, keyboard: true});
        var act = sendVerify && p.status === "accepted"
          ? '<br><a class="map-act" href="' + p.url + '/actions/send_verify">派发核实 ›</a> <span class="map-act-note">在岗监督员按距离排在前面</span>' : "";
        m.bindPopup('<div class="map-popup"><a href="' + p.url + '">' + esc(p.number) + "</a> " + esc(p.status_label) +
                    (p.deadline_label ? " · " + esc(p.deadline_label) : "") + "<br>" + esc(p.description) + "<br>" + esc(p.address) + act + "</div>");
        m.on("dblclick", function () { location.href = p.url; });
        return m;
      });
      clusters.addLayers(markers);
      document.getElementById("map-count").textContent = "共 " + markers.length + " 件" + (fc.unlocated ? "（" + fc.unlocated + " 件无位置）" : "");
      el.dataset.markers = String(markers.length);
      el.dataset.query = query;  // the filters these markers answer (the URL changes before they arrive)
    });
  }
  // Inspectors on duty (城管通 positions), refreshed every minute.
  var inspectors = L.layerGroup().addTo(map);
  function loadInspectors() {
    return fetch("/api/field/positions", {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : {features: []}; })
      .then(function (fc) {
        inspectors.clearLayers();
        (fc.features || []).forEach(function (f) {
          var c = f.geometry.coordinates, p = f.properties;
          L.marker([c[1], c[0]], {icon: L.divIcon({className: "insp", html: "<span>" + esc(p.name) + "</span>", iconSize: null}),
                                  title: "监督员 " + p.name, zIndexOffset: 1000})
            .bindPopup("监督员 " + esc(p.name) + "（" + esc(p.username) + "）<br>位置更新于 " + esc(String(p.at).slice(11, 16)))
            .addTo(inspectors);
        });
        el.dataset.inspectors = String((fc.features || []).length);
      }).catch(function () {});
  }
  L.control.layers(null, {"单元网格": gridLayer, "街道界线": streetLayer, "案件": clusters, "监督员": inspectors}, {collapsed: false}).addTo(map);
  setInterval(loadInspectors, 60000);

  // Filters from the URL (a link reproduces the view).
  var form = document.getElementById("map-filters");
  new URLSearchParams(location.search).forEach(function (v, k) {
    var f = form.elements[k];
    if (f && f.type === "checkbox") f.checked = v === f.value; else if (f && f.tagName) f.value = v;
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); loadCases(); });
  window.hotlineMap = {map: map, clusters: clusters, reload: loadCases};
  loadGrid().then(loadCases).then(loadInspectors).then(function () { el.dataset.ready = "1"; },
    function (err) { window.__mapError = String(err); console.error("map: " + err); });
})();
