// Analytics: GET /api/analytics?from=&to=[&sender=][&tag=] drawn as inline SVG (built with
// createElementNS through dom.el, no library): per day sent / delivered / failed / blocked as
// grouped bars, and the delivery, opt-out and response rates as lines; the totals as a table.
// Each chart carries an aria-label with its figures and a table of them, and every bar and
// point carries data-series, data-date and data-value.
import { el, clear, announce } from "../dom.js";
import { showError } from "../api.js";

const SENDER_KEY = "sms-console.sender";
const COUNTS = [
  { key: "sent", label: "Sent", color: "#0b5cad" },
  { key: "delivered", label: "Delivered", color: "#1a7f37" },
  { key: "failed", label: "Failed", color: "#b42318" },
  { key: "blocked", label: "Blocked", color: "#9a6700" },
];
const RATES = [
  { key: "deliveryRate", label: "Delivery rate", color: "#1a7f37", marker: "circle" },
  { key: "optOutRate", label: "Opt-out rate", color: "#b42318", marker: "square" },
  { key: "responseRate", label: "Response rate", color: "#0b5cad", marker: "diamond" },
];
const TOTALS = [
  ["sent", "Sent"], ["delivered", "Delivered"], ["failed", "Failed"], ["expired", "Expired"],
  ["blocked", "Blocked (opted out)"], ["rejected", "Rejected"], ["segments", "Segments"],
  ["inbound", "Inbound messages"], ["responses", "Responses"], ["optOuts", "Opt-outs"],
  ["optIns", "Opt-ins"], ["unverifiedTollFree", "Failed: unverified toll-free sender"],
  ["deliveryRate", "Delivery rate"], ["optOutRate", "Opt-out rate"], ["responseRate", "Response rate"],
];

// The charts' drawing box: as wide as the page at drawing time (so the labels keep their size on
// a phone and on a wide screen), scaled down with the page after that.
const SVG_NS = "http://www.w3.org/2000/svg";
const H = 260;
const PAD = { left: 44, right: 10, top: 12, bottom: 36 };
let W = 720;

/**
 * An SVG element made with createElementNS. Only this module's own figures, colours and labels
 * go into its attributes; text children become text nodes (never parsed).
 */
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function utcDay(date) {
  return date.toISOString().slice(0, 10);
}

function percent(rate) {
  return rate === null || rate === undefined ? "n/a" : `${(rate * 100).toFixed(1)}%`;
}

function shortDay(iso) {
  return iso.slice(5); // MM-DD
}

/** The count axis: a whole "nice" step (1, 2 or 5 times a power of ten) and the ticks to cover `value`. */
function countScale(value) {
  const rough = Math.max(value / 4, 1);
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((v) => v >= rough);
  const ticks = Math.max(1, Math.ceil(value / step));
  return { max: step * ticks, ticks };
}

/** A rate's point: its own shape as well as its colour (circle, square, diamond). */
function marker(shape, x, y, color, attrs) {
  if (shape === "square") {
    return svg("rect", { x: (x - 4).toFixed(2), y: (y - 4).toFixed(2), width: 8, height: 8, fill: color, ...attrs });
  }
  if (shape === "diamond") {
    return svg("path", { d: `M${x.toFixed(2)} ${(y - 5).toFixed(2)} l5 5 l-5 5 l-5 -5 z`, fill: color, ...attrs });
  }
  return svg("circle", { cx: x.toFixed(2), cy: y.toFixed(2), r: 4, fill: color, ...attrs });
}

function legend(series, id) {
  return el("ul", { class: "chart-legend", id, "aria-hidden": "true" },
    series.map((s) => el("li", {},
      svg("svg", { width: 28, height: 12, viewBox: "0 0 28 12", "aria-hidden": "true" },
        s.marker
          ? [svg("line", { x1: 0, y1: 6, x2: 28, y2: 6, stroke: s.color, "stroke-width": 2 }),
            marker(s.marker, 14, 6, s.color, {})]
          : svg("rect", { x: 0, y: 0, width: 28, height: 12, fill: s.color })),
      " ", s.label)));
}

function axes(chart, maxValue, ticks, format, days, slot) {
  const plotH = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= ticks; i += 1) {
    const value = (maxValue * i) / ticks;
    const y = PAD.top + plotH - (plotH * i) / ticks;
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, stroke: "#d0d7de",
      "stroke-width": 1 }));
    chart.append(svg("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", fill: "#57606a",
      "font-size": 12, class: "chart-tick" }, format(value)));
  }
  // A date label under every nth day, so long ranges stay readable.
  const every = Math.max(1, Math.ceil(days.length / 10));
  days.forEach((day, i) => {
    if (i % every !== 0 && i !== days.length - 1) return;
    chart.append(svg("text", { x: PAD.left + slot * (i + 0.5), y: H - PAD.bottom + 20,
      "text-anchor": "middle", fill: "#57606a", "font-size": 12, class: "chart-tick" }, shortDay(day.date)));
  });
}

function countsChart(days) {
  const scale = countScale(Math.max(0, ...days.flatMap((d) => COUNTS.map((s) => d[s.key] || 0))));
  const maxValue = scale.max;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(days.length, 1);
  const barW = Math.max(1, (slot * 0.8) / COUNTS.length);
  const summary = days.map((d) => `${d.date}: ${COUNTS.map((s) => `${s.label.toLowerCase()} ${d[s.key] || 0}`).join(", ")}`).join("; ");
  const chart = svg("svg", { id: "chart-counts", class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%",
    role: "img", "aria-label": `Messages per day. ${summary}.`, "data-max": maxValue });
  axes(chart, maxValue, scale.ticks, (v) => String(Math.round(v)), days, slot);
  days.forEach((day, i) => {
    const group = svg("g", { "data-date": day.date });
    COUNTS.forEach((s, j) => {
      const value = day[s.key] || 0;
      const h = (plotH * value) / maxValue;
      const x = PAD.left + slot * i + slot * 0.1 + barW * j;
      group.append(svg("rect", { x: x.toFixed(2), y: (PAD.top + plotH - h).toFixed(2),
        width: barW.toFixed(2), height: h.toFixed(2), fill: s.color, class: "bar",
        "data-series": s.key, "data-date": day.date, "data-value": value },
      svg("title", {}, `${day.date} ${s.label}: ${value}`)));
    });
    chart.append(group);
  });
  return chart;
}

function ratesChart(days) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(days.length, 1);
  const summary = days.map((d) => `${d.date}: ${RATES.map((s) => `${s.label.toLowerCase()} ${percent(d[s.key])}`).join(", ")}`).join("; ");
  const chart = svg("svg", { id: "chart-rates", class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%",
    role: "img", "aria-label": `Rates per day. ${summary}.` });
  axes(chart, 1, 4, (v) => `${Math.round(v * 100)}%`, days, slot);
  RATES.forEach((s) => {
    const xy = (i, rate) => [PAD.left + slot * (i + 0.5), PAD.top + plotH - plotH * Math.min(Math.max(rate, 0), 1)];
    // A day without a rate (no denominator) breaks the line instead of drawing a zero.
    let run = [];
    const runs = [];
    days.forEach((day, i) => {
      const rate = day[s.key];
      if (rate === null || rate === undefined) {
        if (run.length) runs.push(run);
        run = [];
      } else {
        run.push(xy(i, rate));
      }
    });
    if (run.length) runs.push(run);
    runs.filter((r) => r.length > 1).forEach((r) => chart.append(svg("polyline", {
      points: r.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join(" "), fill: "none",
      stroke: s.color, "stroke-width": 2, "data-series": s.key })));
    days.forEach((day, i) => {
      const rate = day[s.key];
      if (rate === null || rate === undefined) return;
      const [x, y] = xy(i, rate);
      const point = marker(s.marker, x, y, s.color,
        { class: "point", "data-series": s.key, "data-date": day.date, "data-value": rate });
      point.append(svg("title", {}, `${day.date} ${s.label}: ${percent(rate)}`));
      chart.append(point);
    });
  });
  return chart;
}

function figuresTable(id, caption, days, series, format) {
  return el("div", { class: "table-wrap" }, el("table", { id },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Day"),
      series.map((s) => el("th", { scope: "col", class: "num" }, s.label)))),
    el("tbody", {}, days.map((d) => el("tr", { "data-date": d.date },
      el("th", { scope: "row" }, d.date),
      series.map((s) => el("td", { class: "num", "data-series": s.key }, format(d[s.key]))))))));
}

function chartFigure(id, title, chart, legendNode, table) {
  return el("section", { id, class: "chart-figure", "aria-labelledby": `${id}-heading` },
    el("h2", { id: `${id}-heading` }, title),
    legendNode, chart,
    el("details", {}, el("summary", {}, `${title}: the figures as a table`), table));
}

export async function render(root, api) {
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 6 * 24 * 3600 * 1000);
  const inputs = {
    from: el("input", { id: "an-from", name: "from", type: "date", required: true, value: utcDay(weekAgo) }),
    to: el("input", { id: "an-to", name: "to", type: "date", required: true, value: utcDay(today) }),
    sender: el("input", { id: "an-sender", name: "sender", type: "text", inputmode: "tel",
      autocomplete: "off", placeholder: "every sender",
      value: window.sessionStorage.getItem(SENDER_KEY) || "" }),
    tag: el("input", { id: "an-tag", name: "tag", type: "text", autocomplete: "off", placeholder: "every tag" }),
  };
  const submit = el("button", { type: "submit", id: "an-show" }, "Show");
  const form = el("form", { id: "analytics-form" },
    el("fieldset", {},
      el("legend", {}, "Range and filters"),
      el("label", { for: "an-from" }, "From (UTC day)"), inputs.from,
      el("label", { for: "an-to" }, "To (UTC day, included)"), inputs.to,
      el("label", { for: "an-sender" }, "Sender"), inputs.sender,
      el("label", { for: "an-tag" }, "Tag"), inputs.tag,
      el("p", { class: "hint" }, "Up to 366 days. Leave sender or tag empty for all."),
      el("div", { class: "actions" }, submit)));
  const status = el("p", { id: "an-status", role: "status", "aria-live": "polite" });
  const errorBox = el("div", { id: "an-error", class: "error", role: "alert" });
  const output = el("div", { id: "an-output" });
  root.append(el("h1", { id: "page-heading", tabindex: "-1" }, "Analytics"), form, errorBox, status, output);

  async function load() {
    clear(errorBox);
    submit.disabled = true;
    announce(status, "Loading figures…");
    let data;
    try {
      data = await api.get("/analytics", { from: inputs.from.value, to: inputs.to.value,
        sender: inputs.sender.value.trim(), tag: inputs.tag.value.trim() });
    } catch (error) {
      showError(errorBox, error);
      announce(status, "The figures could not be loaded.");
      return;
    } finally {
      submit.disabled = false;
    }
    clear(output);
    W = Math.round(Math.min(Math.max(output.clientWidth || root.clientWidth || 720, 300), 1100));
    const days = (data && data.days) || [];
    const totals = (data && data.totals) || {};
    output.append(
      el("h2", { id: "an-totals-heading" }, "Totals"),
      el("div", { class: "table-wrap" }, el("table", { id: "an-totals", "aria-labelledby": "an-totals-heading" },
        el("tbody", {}, TOTALS.map(([key, label]) => el("tr", { "data-key": key },
          el("th", { scope: "row" }, label),
          el("td", { class: "num" }, key.endsWith("Rate") ? percent(totals[key]) : String(totals[key] ?? 0))))))),
      chartFigure("an-counts", "Messages per day", countsChart(days), legend(COUNTS, "an-counts-legend"),
        figuresTable("an-counts-table", "Messages per day", days, COUNTS, (v) => String(v ?? 0))),
      chartFigure("an-rates", "Rates per day", ratesChart(days), legend(RATES, "an-rates-legend"),
        figuresTable("an-rates-table", "Rates per day", days, RATES, percent)));
    announce(status, `${days.length} day${days.length === 1 ? "" : "s"}: ${totals.sent ?? 0} sent, `
      + `${totals.delivered ?? 0} delivered, delivery rate ${percent(totals.deliveryRate)}.`);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (inputs.sender.value.trim()) window.sessionStorage.setItem(SENDER_KEY, inputs.sender.value.trim());
    load();
  });
  await load();
}
