// SaaS metrics charts with uPlot (the dashboard's chart library): MRR, its monthly movements,
// and retention/churn rates, one point per month, from the JSON embedded in the page.
(function () {
  "use strict";
  const COLOURS = ["#2563eb", "#15803d", "#0e7490", "#b45309", "#be123c", "#9333ea"];

  function chart(container, title, times, series, width) {
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.series = title;
    const head = document.createElement("div");
    head.className = "chart-title";
    head.textContent = title;
    box.appendChild(head);
    container.appendChild(box);
    const opts = {
      width: width,
      height: 200,
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [{ space: 60 }, { size: 70 }],
      series: [{}].concat(
        series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2,
                                points: { show: true, size: 5 } }))
      ),
    };
    new uPlot(opts, [times].concat(series.map((s) => s.values)), box);
  }

  function draw() {
    const node = document.getElementById("metrics-data");
    const container = document.getElementById("metrics-charts");
    if (!node || !container || typeof uPlot === "undefined") return;
    const data = JSON.parse(node.textContent);
    if (!data || !data.months.length) return;
    const months = data.months;
    const times = months.map((m) => Date.parse(m.month + "-01T00:00:00Z") / 1000);
    const money = (key) => months.map((m) => m[key] / 100);
    const rate = (key) => months.map((m) => (m[key] === null ? null : Number(m[key])));
    const width = Math.max(320, container.clientWidth - 8);
    container.innerHTML = "";
    chart(container, `MRR (${data.currency})`, times, [
      { label: "MRR", values: money("closing_mrr_minor") },
    ], width);
    chart(container, `MRR movements (${data.currency})`, times, [
      { label: "new", values: money("new_mrr_minor") },
      { label: "expansion", values: money("expansion_mrr_minor") },
      { label: "contraction", values: money("contraction_mrr_minor").map((v) => -v) },
      { label: "churned", values: money("churned_mrr_minor").map((v) => -v) },
    ], width);
    chart(container, "Retention and churn (fractions)", times, [
      { label: "NRR", values: rate("net_revenue_retention") },
      { label: "GRR", values: rate("gross_revenue_retention") },
      { label: "logo churn", values: rate("logo_churn_rate") },
      { label: "renewal rate", values: rate("renewal_rate") },
    ], width);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
