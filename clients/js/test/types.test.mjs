// nexios.d.ts: valid TypeScript that accepts test/usage.ts, and it declares what nexios.js exports.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { test } from "node:test";
import * as nexios from "../nexios.js";

const here = new URL("..", import.meta.url).pathname;

test("the declarations compile with test/usage.ts under --strict", () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const args = ["--noEmit", "--strict", "--target", "es2022", "--module", "es2022", "--moduleResolution", "bundler"];
  try {
    execFileSync(process.execPath, [tsc, ...args, "--lib", "es2022,dom", "test/usage.ts"], { cwd: here, encoding: "utf8" });
  } catch (error) {
    assert.fail(`tsc failed:\n${error.stdout}${error.stderr}`);
  }
});

test("every export and public method of nexios.js is declared", async () => {
  const declarations = await readFile(new URL("../nexios.d.ts", import.meta.url), "utf8");
  for (const name of Object.keys(nexios)) assert.match(declarations, new RegExp(`export (const|class) ${name}\\b`));
  for (const cls of [nexios.NexiosClient, nexios.Subscription]) {
    for (const method of Object.getOwnPropertyNames(cls.prototype)) {
      if (method === "constructor" || method.startsWith("_")) continue;
      assert.match(declarations, new RegExp(`\\b${method}[<(]`), `${cls.name}.${method} is not declared`);
    }
  }
});
