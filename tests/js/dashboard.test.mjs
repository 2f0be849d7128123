// The dashboard page's helpers (nexios/ops/static/dashboard.js), under node's test runner.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  chartedSeries,
  chartMax,
  chartPoints,
  formatCount,
  layerSummary,
  memberLabel,
  presenceSummary,
  recentRate,
  spanLabel,
} from "../../nexios/ops/static/dashboard.js";

test("recentRate averages the last seconds", () => {
  assert.equal(recentRate([]), 0);
  assert.equal(recentRate([100, 1, 2, 3, 4, 5]), 3);
  assert.equal(recentRate([4, 6], 5), 5);
});

test("chartPoints scales to the box, newest on the right", () => {
  assert.equal(chartPoints([], 10), "");
  assert.equal(chartPoints([0, 5, 10], 10, 300, 100), "0.0,100.0 150.0,50.0 300.0,0.0");
  // values above the scale are clipped to the top
  assert.equal(chartPoints([20], 10, 300, 100), "0.0,0.0");
});

test("chartMax is at least 1 and covers every series", () => {
  assert.equal(chartMax([], [0, 0]), 1);
  assert.equal(chartMax([1, 7], [3]), 7);
});

test("formatCount groups digits and keeps one decimal for small rates", () => {
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount(2.46), "2.5");
  assert.equal(formatCount(12.6), "13");
  assert.equal(formatCount(null), "–");
});

test("members are named by their metadata, else their id", () => {
  assert.equal(memberLabel({ id: "abc", metadata: { name: "ann" } }), "ann");
  assert.equal(memberLabel({ id: "abc", metadata: { user: 7 } }), "7");
  assert.equal(memberLabel({ id: "abc", metadata: {} }), "abc");
  assert.equal(
    presenceSummary({ presence: 5, present: [{ id: "a", metadata: { name: "x" } }] }),
    "x (+4)",
  );
  assert.equal(presenceSummary({ presence: null, present: [] }), "unavailable");
});

test("layerSummary says up or down, and why when down", () => {
  assert.deepEqual(layerSummary({ url: "memory://", connected: true, reconnects: 0 }), {
    text: "memory:// up",
    up: true,
  });
  const down = layerSummary({
    url: "redis://r:6379/0",
    connected: false,
    reconnects: 1,
    last_error: "Connection refused",
  });
  assert.equal(down.text, "redis://r:6379/0 down · 1 reconnect · Connection refused");
  assert.equal(down.up, false);
});

test("the chart starts when the oldest process did, within the window", () => {
  const rates = { first: 95, end: 99, in: [9, 9, 1, 2, 3, 4, 5], out: [0, 0, 0, 0, 0, 0, 1] };
  assert.deepEqual(chartedSeries(rates), {
    in: [1, 2, 3, 4, 5],
    out: [0, 0, 0, 0, 1],
    seconds: 5,
  });
  assert.equal(chartedSeries({ ...rates, first: 99 }).seconds, 2); // a line needs 2 points
  assert.equal(spanLabel(42), "last 42 s");
  assert.equal(spanLabel(300), "last 5 min");
});
