// The consumer page's chart downsampler (cloud/page/static/chart.js): a pure function
// that keeps every bucket's min and max, so an excursion is never averaged away.
// Run: node --test tests/page/chart.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { downsample, renderChart, fmtTemp } from "../../cloud/page/static/chart.js";

const series = (n, f, t0 = 1_790_000_000, dt = 60) => Array.from({ length: n }, (_, i) => [t0 + i * dt, f(i)]);

test("short series are returned as they are (a copy)", () => {
  const pts = series(10, (i) => i);
  const out = downsample(pts, 100);
  assert.deepEqual(out, pts);
  assert.notEqual(out, pts);
  assert.deepEqual(downsample([], 10), []);
  assert.deepEqual(downsample([[1, 5]], 10), [[1, 5]]);
});

test("a one-reading spike among 100,000 survives, and so does a one-reading dip", () => {
  const pts = series(100_000, () => 300);
  pts[61_234][1] = 912; // one reading too warm
  pts[7][1] = -250; // one too cold
  const out = downsample(pts, 300);
  assert.ok(out.length <= 2 * 300 + 2, `${out.length} points`);
  assert.ok(out.some((p) => p[0] === pts[61_234][0] && p[1] === 912));
  assert.ok(out.some((p) => p[0] === pts[7][0] && p[1] === -250));
});

test("the envelope is kept: each bucket's min and max, in time order, first and last kept", () => {
  const pts = series(10_000, (i) => Math.round(400 * Math.sin(i / 37)) + ((i * 7919) % 97));
  const buckets = 50;
  const out = downsample(pts, buckets);
  for (let i = 1; i < out.length; i++) assert.ok(out[i][0] > out[i - 1][0], "ascending time");
  assert.deepEqual(out[0], pts[0]);
  assert.deepEqual(out[out.length - 1], pts[pts.length - 1]);
  const t0 = pts[0][0], span = pts[pts.length - 1][0] - t0;
  const bucket = (t) => Math.min(buckets - 1, Math.floor(((t - t0) / span) * buckets));
  for (let b = 0; b < buckets; b++) {
    const inB = pts.filter((p) => bucket(p[0]) === b).map((p) => p[1]);
    const kept = out.filter((p) => bucket(p[0]) === b).map((p) => p[1]);
    assert.equal(Math.max(...kept), Math.max(...inB), `bucket ${b} max`);
    assert.equal(Math.min(...kept), Math.min(...inB), `bucket ${b} min`);
  }
  assert.equal(Math.max(...out.map((p) => p[1])), Math.max(...pts.map((p) => p[1])));
  assert.equal(Math.min(...out.map((p) => p[1])), Math.min(...pts.map((p) => p[1])));
});

test("an excursion of several readings keeps its peak whatever the bucket count", () => {
  const pts = series(5_000, (i) => (i >= 2_000 && i < 2_010 ? 800 + i - 2_000 : 250));
  for (const buckets of [1, 3, 17, 100, 1000]) {
    const out = downsample(pts, buckets);
    assert.equal(Math.max(...out.map((p) => p[1])), 809, `${buckets} buckets`);
  }
});

test("uneven times and equal times do not break it", () => {
  const pts = [[0, 1], [0, 5], [1, 2], [1000, 3], [1001, 9], [1002, 0]].concat(series(100, () => 4, 2000, 1));
  const out = downsample(pts, 2);
  assert.ok(out.some((p) => p[1] === 9) && out.some((p) => p[1] === 0));
  const same = downsample(series(50, (i) => i % 5, 10, 0), 3);
  assert.ok(same.some((p) => p[1] === 4) && same.some((p) => p[1] === 0));
});

test("the chart marks the band, the excursion and out-of-range readings", () => {
  const pts = series(500, (i) => (i > 200 && i < 240 ? 900 : 300), 0, 300);
  const svg = renderChart({
    id: "c1", from: 0, to: 500 * 300, low: 0, high: 500,
    series: [{ label: "cr-truck", points: pts }],
    excursions: [{ from: 201 * 300, to: 240 * 300, side: "high" }],
    title: "Truck", desc: "readings",
  });
  assert.match(svg, /^<svg[^>]*role="img"/);
  assert.match(svg, /class="band"/);
  assert.match(svg, /class="excursion"/);
  assert.match(svg, /class="out"/);
  assert.match(svg, /9\.00 °C/);
  assert.equal(fmtTemp(-5), "-0.05 °C");
  assert.equal(fmtTemp(912), "9.12 °C");
});
