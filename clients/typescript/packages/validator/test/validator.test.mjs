// The shared checks, through the built package as a generated package imports them (ESM) and
// as a CommonJS program requires them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import * as V from "@ferry/validator";

const require = createRequire(import.meta.url);

test("string bounds count code points, not UTF-16 units", () => {
  const check = V.string(1, 2, undefined);
  assert.deepEqual(V.run(check, "😀😀"), []);
  assert.equal(V.run(check, "😀😀😀").length, 1);
  assert.equal(V.run(check, "").length, 1);
  assert.match(V.run(check, 7)[0].message, /must be a string/);
});

test("objects refuse unknown members and name missing ones by path", () => {
  const check = V.object(["a"], [["a", V.integer(0, 10)], ["b", V.nullable(V.boolean)]]);
  assert.deepEqual(V.run(check, { a: 3, b: null }), []);
  assert.deepEqual(V.run(check, { a: 3, c: 1 }), [{ path: "/c", message: "is not a member of this message" }]);
  assert.deepEqual(V.run(check, { b: true })[0].message, 'is missing the required member "a"');
  assert.equal(V.run(check, { a: 1.5 })[0].path, "/a");
});

test("tagged unions pick the variant by type and refuse an unknown tag", () => {
  const check = V.tagged([["ping", V.object(["type"], [["type", V.oneOfValues(["ping"])]])]]);
  assert.deepEqual(V.run(check, { type: "ping" }), []);
  assert.equal(V.run(check, { type: "pong" })[0].path, "/type");
});

test("parseWith refuses text that is not JSON with a typed problem", () => {
  const parsed = V.parseWith(V.anyObject, "{");
  assert.equal(parsed.ok, false);
  assert.match(parsed.problems[0].message, /is not JSON/);
  assert.deepEqual(V.parseWith(V.array(V.number(0, 1), 1, 1), "[0.5]"), { ok: true, value: [0.5] });
});

test("the CommonJS build serves the same checks", () => {
  const cjs = require("@ferry/validator");
  assert.deepEqual(cjs.run(cjs.integer(0, 1), 2), [{ path: "", message: "must be at most 1" }]);
});
