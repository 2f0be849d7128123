// The budget: at most 8 KB minified + gzip (phoenix.js is 8.5 KB). Prints the figure.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { minify } from "terser";

const BUDGET = 8 * 1024;

test(`nexios.js is at most ${BUDGET} bytes minified + gzip`, async () => {
  const source = await readFile(new URL("../nexios.js", import.meta.url), "utf8");
  const { code } = await minify(source, { module: true, compress: { passes: 2 }, mangle: true });
  const gzipped = gzipSync(code, { level: 9 }).length;
  console.log(`nexios.js: ${source.length} bytes, ${code.length} minified, ${gzipped} minified + gzip`);
  assert.ok(gzipped <= BUDGET, `${gzipped} bytes minified + gzip, over the budget of ${BUDGET}`);
  // The minified module still works: it exports the client.
  const url = `data:text/javascript;base64,${Buffer.from(code).toString("base64")}`;
  const module = await import(url);
  assert.equal(typeof module.NexiosClient, "function");
  assert.equal(module.PROTOCOL, "nexios.v1");
});
