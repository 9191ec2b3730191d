// Pure helpers of the request page (request.js): durations, periods, and the purpose bytes
// it stores (plain canonical JSON, or sealed to the listing's owner key and opened by it).
import assert from "node:assert/strict";
import { test } from "node:test";
import { readPurpose } from "../../../marketplace/web/static/js/documents.js";
import { x25519KeyFromSignature, toHex } from "../../../marketplace/web/static/js/crypto.js";
import { parseDuration, parsePeriods, purposeBytes } from "../../../marketplace/web/static/js/request.js";

test("durations parse like marketplace.app.units.parse_duration", () => {
  assert.equal(parseDuration(""), null);
  assert.equal(parseDuration("90"), 90);
  assert.equal(parseDuration("15m"), 900);
  assert.equal(parseDuration(" 2H "), 7200);
  assert.equal(parseDuration("7d"), 604800);
  for (const bad of ["0", "0d", "-1d", "1w", "1.5h", "1e3", "d", "１d"]) {
    assert.throws(() => parseDuration(bad), RangeError, bad);
  }
});

test("periods are whole numbers within uint32", () => {
  assert.equal(parsePeriods("1"), 1n);
  assert.equal(parsePeriods(" 12 "), 12n);
  assert.equal(parsePeriods("4294967295"), 4294967295n);
  for (const bad of ["0", "-1", "1.5", "", "4294967296", "1e2", "x"]) {
    assert.throws(() => parsePeriods(bad), RangeError, bad);
  }
});

const fields = { requester: "A lab", purpose: "asthma study", intendedUse: "", retention: "1 year", contact: "" };

test("a plain purpose is the canonical document", () => {
  const bytes = purposeBytes(fields, null);
  assert.equal(new TextDecoder().decode(bytes),
    '{"contact":"","intendedUse":"","purpose":"asthma study","requester":"A lab","retention":"1 year","schema":"datadebit/purpose/v1"}');
});

test("a sealed purpose opens only with the owner's key", () => {
  const owner = x25519KeyFromSignature("0x" + "11".repeat(64) + "1b");
  const other = x25519KeyFromSignature("0x" + "22".repeat(64) + "1b");
  const bytes = purposeBytes(fields, toHex(owner.publicKey));
  const opened = readPurpose(bytes, { ownerKey: owner });
  assert.equal(opened.sealed, true);
  assert.equal(opened.document.purpose, "asthma study");
  assert.throws(() => readPurpose(bytes, { ownerKey: other }), /does not open it/);
  assert.throws(() => purposeBytes({ ...fields, requester: "" }, null));
});
