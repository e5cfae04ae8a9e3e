// The carrier map: Leaflet (vendored) on a plain canvas, no tiles; data from carriers.json.
(function () {
  "use strict";
  function start() {
    var box = document.getElementById("carrier-map");
    if (!box || typeof L === "undefined") { return; }
    var map = L.map(box, { zoomSnap: 0.25, attributionControl: false });
    var layer = L.layerGroup().addTo(map);
    function draw(data) {
      layer.clearLayers();
      var points = [];
      data.stations.forEach(function (s) {
        if (s.latitude === null) { return; }
        points.push([s.latitude, s.longitude]);
        L.rectangle([[s.latitude - 0.15, s.longitude - 0.22], [s.latitude + 0.15, s.longitude + 0.22]],
          { color: "#475569", weight: 1, fillOpacity: 0.3 })
          .bindTooltip(s.ref, { permanent: true, direction: "right" }).addTo(layer);
      });
      data.shipments.forEach(function (s) {
        if (s.to_latitude === null) { return; }
        L.polyline([[s.from_latitude, s.from_longitude], [s.to_latitude, s.to_longitude]],
          { color: s.status === "shipped" ? "#2563eb" : "#94a3b8", dashArray: "6 6", weight: 2 })
          .bindPopup("part for order " + s.order_id + ": " + s.depot + " → " + s.station +
                     " (" + s.status + ", ETA " + s.eta + ")").addTo(layer);
      });
      data.carriers.forEach(function (c) {
        if (c.latitude === null) { return; }
        points.push([c.latitude, c.longitude]);
        if (c.next_latitude !== null && c.next_stop) {
          L.polyline([[c.latitude, c.longitude], [c.next_latitude, c.next_longitude]],
            { color: "#16a34a", weight: 1 }).addTo(layer);
        }
        L.circleMarker([c.latitude, c.longitude], { radius: 6, color: "#16a34a", fillOpacity: 0.9 })
          .bindPopup(c.ref + (c.at_station ? " at " + c.at_station : "") +
                     (c.next_stop ? " → " + c.next_stop + " " + c.next_arrival : "") +
                     (c.position_at ? " (position " + c.position_at + " from " +
                      (c.position_source || "api") + ")" : ""))
          .addTo(layer);
      });
      if (points.length) { map.fitBounds(points, { padding: [30, 30], maxZoom: 7 }); }
      else { map.setView([50, 10], 4); }
    }
    function load() {
      fetch(box.dataset.src, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { draw(data); } });
    }
    load();
    setInterval(load, 15000);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
