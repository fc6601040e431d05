// Small SVG line charts: one line per series over shared x labels, with axis ticks and a legend.
"use strict";

const PALETTE = ["#3559e0", "#e0761f", "#1f9d6b", "#c2417a", "#7a5af5", "#8a8f98"];

function svgEl(name, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function formatTick(value) {
  if (value === 0) return "0";
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
  if (Math.abs(value) < 0.01) return value.toExponential(0);
  return Number(value.toPrecision(2)).toString();
}

// series: [{name, values: [number|null per label]}]
function lineChart(container, labels, series) {
  container.replaceChildren();
  const width = 420, height = 190, left = 46, right = 12, top = 12, bottom = 26;
  const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, role: "img"});
  const all = series.flatMap(s => s.values).filter(v => v !== null);
  if (!labels.length || !all.length) {
    svg.append(svgEl("text", {x: width / 2, y: height / 2, "text-anchor": "middle",
                              "font-size": 14, fill: "#667085"}, "No data yet"));
    container.append(svg);
    return;
  }
  const max = Math.max(...all) || 1;
  const x = i => left + (labels.length === 1 ? (width - left - right) / 2
                                              : i * (width - left - right) / (labels.length - 1));
  const y = v => top + (height - top - bottom) * (1 - v / max);
  for (let t = 0; t <= 4; t++) {
    const value = max * t / 4;
    svg.append(svgEl("line", {x1: left, x2: width - right, y1: y(value), y2: y(value),
                              stroke: "#eef0f3"}));
    svg.append(svgEl("text", {x: left - 6, y: y(value) + 4, "text-anchor": "end",
                              "font-size": 12, fill: "#667085"}, formatTick(value)));
  }
  const step = Math.max(1, Math.ceil(labels.length / 6));
  labels.forEach((label, i) => {
    if (i % step === 0) svg.append(svgEl("text", {x: x(i), y: height - 6, "text-anchor": "middle",
                                                  "font-size": 12, fill: "#667085"}, label));
  });
  series.forEach((s, n) => {
    const color = PALETTE[n % PALETTE.length];
    const points = s.values.map((v, i) => v === null ? null : `${x(i)},${y(v)}`).filter(Boolean);
    svg.append(svgEl("polyline", {points: points.join(" "), fill: "none", stroke: color,
                                  "stroke-width": 2, class: "series"}));
    s.values.forEach((v, i) => {
      if (v === null) return;
      const dot = svgEl("circle", {cx: x(i), cy: y(v), r: labels.length > 20 ? 2.5 : 4.5,
                                     fill: color});
      dot.append(svgEl("title", {}, `${s.name} · ${labels[i]}: ${v}`));
      svg.append(dot);
    });
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, n) => {
    const entry = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = PALETTE[n % PALETTE.length];
    entry.append(swatch, s.name);
    legend.append(entry);
  });
  container.append(svg, legend);
}
