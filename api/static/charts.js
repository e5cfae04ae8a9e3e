// Asset charts with uPlot: one chart per series (mean line, min–max or interval band).
// Range buttons and drag-to-zoom fetch a new window from the server, which downsamples to at
// most 1,000 points (raw readings for short spans, the hourly rollup for long ones).
(function () {
  "use strict";
  const COLOURS = ["#2563eb", "#b45309", "#15803d", "#9333ea", "#be123c", "#0e7490"];

  function describe(data) {
    const b = data.bucket_seconds;
    const width = b >= 3600 ? `${b / 3600} h` : b >= 60 ? `${Math.round(b / 60)} min` : `${b} s`;
    const from = data.source === "raw" ? "raw readings" : data.source === "hourly" ? "hourly rollup" : data.source;
    return `${from}, ${width} buckets`;
  }

  function draw(panel, data) {
    const container = panel.container;
    container.innerHTML = "";
    const width = Math.max(320, container.clientWidth - 8);
    const start = Date.parse(data.start) / 1000;
    const stop = Date.parse(data.stop) / 1000;
    let points = 0;
    data.series.forEach((s, i) => {
      const box = document.createElement("div");
      box.className = "chart";
      box.dataset.series = s.name;
      const title = document.createElement("div");
      title.className = "chart-title";
      title.textContent = s.name + (s.unit ? ` (${s.unit})` : "");
      box.appendChild(title);
      container.appendChild(box);
      if (!s.t.length) {
        const none = document.createElement("div");
        none.className = "muted nodata";
        none.textContent = "no data in this range";
        box.appendChild(none);
        return;
      }
      points += s.t.length;
      const colour = COLOURS[i % COLOURS.length];
      const opts = {
        width: width,
        height: 170,
        legend: { show: true },
        cursor: { sync: { key: container.id }, drag: { x: true, y: false, setScale: false } },
        scales: { x: { time: true, min: start, max: stop } },
        axes: [{ space: 70 }, { size: 64 }],
        series: [
          {},
          { label: "low", stroke: "rgba(0,0,0,0)", points: { show: false } },
          { label: "high", stroke: "rgba(0,0,0,0)", points: { show: false } },
          { label: panel.kind === "rul" ? "RUL" : "mean", stroke: colour, width: 1.5 },
        ],
        bands: [{ series: [2, 1], fill: colour + "26" }],
        hooks: {
          setSelect: [
            (u) => {
              if (u.select.width > 4) {
                const min = u.posToVal(u.select.left, "x");
                const max = u.posToVal(u.select.left + u.select.width, "x");
                load(panel, { start: new Date(min * 1000).toISOString(), stop: new Date(max * 1000).toISOString() });
              }
            },
          ],
        },
      };
      const chart = new uPlot(opts, [s.t, s.low, s.high, s.mid], box);
      chart.over.addEventListener("dblclick", (e) => {
        e.stopPropagation();
        load(panel, { range: panel.range });
      });
    });
    container.dataset.points = String(points);
    container.dataset.state = "ready";
    if (panel.sourceLabel) panel.sourceLabel.textContent = describe(data);
  }

  function load(panel, params) {
    panel.container.dataset.state = "loading";
    const url = panel.container.dataset.url + "?" + new URLSearchParams(params).toString();
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((data) => draw(panel, data))
      .catch((err) => {
        panel.container.dataset.state = "error";
        panel.container.textContent = "could not load the chart: " + err.message;
      });
  }

  function setUp(kind) {
    const container = document.getElementById(kind + "-charts");
    const embedded = document.getElementById(kind + "-data");
    const buttons = document.querySelector(`.ranges[data-chart="${kind}"]`);
    if (!container || !embedded) return;
    const active = buttons && buttons.querySelector("button.active");
    const panel = {
      kind: kind,
      container: container,
      range: active ? active.dataset.range : "7d",
      sourceLabel: document.getElementById(kind + "-source"),
    };
    draw(panel, JSON.parse(embedded.textContent));
    if (buttons) {
      buttons.addEventListener("click", (e) => {
        const b = e.target.closest("button[data-range]");
        if (!b) return;
        buttons.querySelectorAll("button").forEach((x) => x.classList.toggle("active", x === b));
        panel.range = b.dataset.range;
        load(panel, { range: panel.range });
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!window.uPlot) return;
    setUp("telemetry");
    setUp("rul");
  });
})();
