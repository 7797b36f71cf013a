// Temperature charts of the consumer page: inline SVG, no library.
//
// downsample() is a pure function (tests/page/chart.test.mjs): it keeps, in every
// time bucket, the lowest and the highest reading, so an excursion - however short -
// is never averaged away, and the chart's envelope is the data's envelope.

// points: [[t, v], ...] ascending by t. Returns at most 2 * buckets + 2 points, in time
// order: the first and last points, and each bucket's minimum and maximum (a point that
// is both is kept once). Every local extreme that is a bucket's extreme survives; in
// particular the overall minimum and maximum always do.
export function downsample(points, buckets) {
  const n = points.length;
  if (!(buckets >= 1) || n <= 2 * buckets + 2) return points.slice();
  const t0 = points[0][0];
  const span = points[n - 1][0] - t0;
  const lo = new Array(buckets).fill(-1);
  const hi = new Array(buckets).fill(-1);
  for (let i = 0; i < n; i++) {
    const b = span > 0 ? Math.min(buckets - 1, Math.floor(((points[i][0] - t0) / span) * buckets)) : 0;
    const v = points[i][1];
    if (lo[b] < 0 || v < points[lo[b]][1]) lo[b] = i;
    if (hi[b] < 0 || v > points[hi[b]][1]) hi[b] = i;
  }
  const keep = new Set([0, n - 1]);
  for (let b = 0; b < buckets; b++) {
    if (lo[b] >= 0) keep.add(lo[b]);
    if (hi[b] >= 0) keep.add(hi[b]);
  }
  return [...keep].sort((a, b) => a - b).map((i) => points[i]);
}

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export function fmtTemp(c) {
  if (c === null || c === undefined) return "–";
  const a = Math.abs(c);
  return `${c < 0 ? "-" : ""}${Math.floor(a / 100)}.${String(a % 100).padStart(2, "0")} °C`;
}

function niceStep(range) {
  const raw = range / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

const COLORS = ["#1f4e8c", "#6b3fa0", "#0b6e4f", "#8a4b08"];

// opts: {from, to, low, high, gap, series: [{label, points: [[t, centi-°C], ...]}],
//        excursions: [{from, to, side}], title, desc, fmtTime(t, span) -> text,
//        width, height, buckets, labels: {allowed, excursion}}
// Returns the SVG's markup (role="img", with <title> and <desc>).
export function renderChart(opts) {
  const W = opts.width || 640;
  const H = opts.height || 220;
  const m = { l: 58, r: 12, t: 12, b: 30 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  const from = opts.from;
  const to = opts.to > opts.from ? opts.to : opts.from + 1;
  const buckets = opts.buckets || Math.floor(iw / 2);
  const series = (opts.series || []).map((s) => ({ ...s, points: downsample(s.points, buckets) }));
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  const { low, high } = opts;
  const bounds = [...values];
  if (low !== null && low !== undefined) bounds.push(low);
  if (high !== null && high !== undefined) bounds.push(high);
  let vmin = bounds.length ? Math.min(...bounds) : 0;
  let vmax = bounds.length ? Math.max(...bounds) : 100;
  const pad = Math.max(50, (vmax - vmin) * 0.12);
  vmin -= pad;
  vmax += pad;
  const x = (t) => m.l + ((Math.min(Math.max(t, from), to) - from) / (to - from)) * iw;
  const y = (v) => m.t + (1 - (v - vmin) / (vmax - vmin)) * ih;
  const f = (n) => n.toFixed(1);
  const parts = [];
  parts.push(
    `<svg class="chart-svg" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${esc(opts.id)}-t ${esc(opts.id)}-d" preserveAspectRatio="xMidYMid meet">`,
    `<title id="${esc(opts.id)}-t">${esc(opts.title || "")}</title>`,
    `<desc id="${esc(opts.id)}-d">${esc(opts.desc || "")}</desc>`,
  );
  // the allowed band
  if ((low ?? null) !== null || (high ?? null) !== null) {
    const yTop = high !== null && high !== undefined ? y(high) : m.t;
    const yBot = low !== null && low !== undefined ? y(low) : m.t + ih;
    parts.push(`<rect class="band" x="${m.l}" y="${f(yTop)}" width="${iw}" height="${f(Math.max(0, yBot - yTop))}"/>`);
    for (const v of [low, high]) {
      if (v === null || v === undefined) continue;
      parts.push(`<line class="limit" x1="${m.l}" x2="${m.l + iw}" y1="${f(y(v))}" y2="${f(y(v))}"/>`);
    }
  }
  // excursions, shaded over their time
  for (const e of opts.excursions || []) {
    if (e.to <= from || e.from >= to) continue;
    const x0 = x(e.from);
    const x1 = Math.max(x(e.to), x0 + 2);
    parts.push(
      `<rect class="excursion" x="${f(x0)}" y="${m.t}" width="${f(x1 - x0)}" height="${ih}"><title>${esc(opts.labels?.excursion || "out of range")}</title></rect>`,
    );
  }
  // y axis: grid and labels
  const step = niceStep(vmax - vmin);
  for (let v = Math.ceil(vmin / step) * step; v <= vmax; v += step) {
    parts.push(
      `<line class="grid" x1="${m.l}" x2="${m.l + iw}" y1="${f(y(v))}" y2="${f(y(v))}"/>`,
      `<text class="tick" x="${m.l - 6}" y="${f(y(v) + 4)}" text-anchor="end">${esc(fmtTemp(Math.round(v)))}</text>`,
    );
  }
  // x axis: evenly spaced times (dates when the leg spans days), about one per 120 px
  const ft = opts.fmtTime || ((t) => new Date(t * 1000).toISOString().slice(11, 16));
  parts.push(`<line class="axis" x1="${m.l}" x2="${m.l + iw}" y1="${m.t + ih}" y2="${m.t + ih}"/>`);
  const ticks = Math.max(1, Math.min(6, Math.floor(iw / 120)));
  for (let k = 0; k <= ticks; k++) {
    const tt = from + ((to - from) * k) / ticks;
    const anchor = k === 0 ? "start" : k === ticks ? "end" : "middle";
    parts.push(`<text class="tick" x="${f(x(tt))}" y="${H - 8}" text-anchor="${anchor}">${esc(ft(Math.round(tt), to - from))}</text>`);
  }
  // the readings: each series' envelope as a line, out-of-range points marked
  series.forEach((s, i) => {
    if (!s.points.length) return;
    // a step line: each reading holds until the next one (docs/protocol.md §12.6), the
    // last until the leg's end or the profile's gap, whichever comes first
    const pts = s.points;
    let d = `M${f(x(pts[0][0]))} ${f(y(pts[0][1]))}`;
    for (let j = 1; j < pts.length; j++) d += `H${f(x(pts[j][0]))}V${f(y(pts[j][1]))}`;
    d += `H${f(x(Math.min(to, pts[pts.length - 1][0] + (opts.gap || 3600))))}`;
    parts.push(`<path class="series" stroke="${COLORS[i % COLORS.length]}" d="${d}"><title>${esc(s.label)}</title></path>`);
    for (const p of s.points) {
      const out = (high !== null && high !== undefined && p[1] > high) || (low !== null && low !== undefined && p[1] < low);
      if (out) parts.push(`<circle class="out" cx="${f(x(p[0]))}" cy="${f(y(p[1]))}" r="3"><title>${esc(fmtTemp(p[1]))}</title></circle>`);
    }
  });
  parts.push("</svg>");
  return parts.join("");
}
