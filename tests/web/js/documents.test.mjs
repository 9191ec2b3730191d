// documents.js against marketplace/documents.py: canonical JSON byte for byte (code-point
// key order, escapes), the purpose document's bytes, hash and CID, a Python-sealed purpose
// opened with the owner key from its wallet signature, and the Python's refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromHex, toHex, x25519KeyFromSignature, utf8, sealTo, base64Encode }
  from "../../../marketplace/web/static/js/crypto.js";
import {
  DocumentError, buildPurposeDocument, canonicalJson, compareCodePoints, encodePurposeDocument,
  openSealedPurpose, parseJsonObject, purposeCid, purposeHash, readPurpose, sealPurpose,
  validatePurposeDocument,
} from "../../../marketplace/web/static/js/documents.js";
import { web } from "./support.mjs";

const docs = web.documents;
const owner = x25519KeyFromSignature(web.keys.owner.signature);
const buyer = x25519KeyFromSignature(web.keys.buyer.signature);

test("canonical JSON equals Python's json.dumps(sort_keys, compact, ensure_ascii=False)", () => {
  assert.ok(docs.canonical.length >= 5);
  for (const v of docs.canonical) assert.equal(canonicalJson(v.value), v.json);
});

test("keys sort by code point, not by UTF-16 unit (U+FFFF before U+1F600)", () => {
  const keys = ["\u{1F600}", "\uffff", "\ue000", "z"];
  assert.deepEqual([...keys].sort(compareCodePoints), ["z", "\ue000", "\uffff", "\u{1F600}"]);
  assert.deepEqual([...keys].sort(), ["z", "\u{1F600}", "\ue000", "\uffff"]); // why it matters
  assert.equal(compareCodePoints("ab", "a") > 0, true);
  assert.equal(compareCodePoints("a", "a"), 0);
});

test("canonical JSON refuses what Python would not write the same way", () => {
  for (const bad of [1.5, NaN, 2 ** 60, "\ud800", { "\udc00": 1 }, undefined, () => 1]) {
    assert.throws(() => canonicalJson(bad), DocumentError);
  }
});

test("the purpose document: same bytes, hash and CID as the Python", () => {
  const p = docs.purpose;
  const doc = buildPurposeDocument({ requester: p.fields.requester, purpose: p.fields.purpose,
    intendedUse: p.fields.intendedUse, retention: p.fields.retention, contact: p.fields.contact });
  const bytes = encodePurposeDocument(doc);
  assert.equal(new TextDecoder().decode(bytes), p.canonical);
  assert.equal(toHex(purposeHash(bytes)), p.purposeHash);
  assert.equal(purposeCid(purposeHash(bytes)), p.cid);
  // optional texts left out are written as "" (the Python model's defaults)
  assert.equal(new TextDecoder().decode(encodePurposeDocument(buildPurposeDocument({ requester: "a", purpose: "b" }))),
    '{"contact":"","intendedUse":"","purpose":"b","requester":"a","retention":"","schema":"datadebit/purpose/v1"}');
});

test("the Python-sealed purpose opens with the owner key from the owner's signature", () => {
  const wrapper = fromHex(docs.sealedPurpose);
  assert.equal(toHex(purposeHash(wrapper)), docs.sealedPurposeHash);
  const opened = openSealedPurpose(wrapper, owner);
  assert.equal(new TextDecoder().decode(opened.bytes), docs.purpose.canonical);
  assert.equal(opened.document.requester, docs.purpose.fields.requester);
  const read = readPurpose(wrapper, { expectedHash: docs.sealedPurposeHash, ownerKey: owner });
  assert.equal(read.sealed, true);
  assert.throws(() => readPurpose(wrapper, { ownerKey: buyer }), { reason: "sealed" });
  assert.throws(() => readPurpose(wrapper, {}), { reason: "sealed" });
});

test("a JS-sealed purpose has the Python's wrapper layout and opens only with the owner key", () => {
  const doc = validatePurposeDocument(JSON.parse(docs.purpose.canonical));
  const wrapper = sealPurpose(doc, web.keys.owner.x25519Public);
  const value = JSON.parse(new TextDecoder().decode(wrapper));
  assert.deepEqual(Object.keys(value).sort(), ["schema", "sealed"]);
  assert.equal(value.schema, "datadebit/sealed-purpose/v1");
  assert.equal(new TextDecoder().decode(wrapper), canonicalJson(value));
  assert.equal(Buffer.from(value.sealed, "base64").length, utf8(docs.purpose.canonical).length + 48);
  assert.equal(new TextDecoder().decode(openSealedPurpose(wrapper, owner).bytes), docs.purpose.canonical);
  assert.throws(() => openSealedPurpose(wrapper, buyer), { reason: "sealed" });
  assert.throws(() => sealPurpose(doc, `0x${"00".repeat(32)}`), { reason: "invalid_owner_key" });
  assert.throws(() => sealPurpose(doc, "0x1234"), { reason: "invalid_owner_key" });
});

test("a plain purpose reads back; the wrong bytes for a purposeHash are refused", () => {
  const bytes = utf8(docs.purpose.canonical);
  const read = readPurpose(bytes, { expectedHash: docs.purpose.purposeHash });
  assert.equal(read.sealed, false);
  assert.equal(read.document.purpose, docs.purpose.fields.purpose);
  assert.throws(() => readPurpose(bytes, { expectedHash: docs.sealedPurposeHash }), { reason: "cid_mismatch" });
});

test("every purpose the Python refuses is refused, with the same reason", () => {
  assert.ok(docs.invalidPurposes.length >= 8);
  for (const v of docs.invalidPurposes) {
    assert.throws(() => readPurpose(utf8(canonicalJson(v.document))), { reason: v.reason }, JSON.stringify(v.document));
  }
});

test("broken JSON is refused: duplicate keys, bad UTF-8, not an object, too deep, too large", () => {
  const cases = [
    ['{"schema":"datadebit/purpose/v1","requester":"a","requester":"b","purpose":"p"}', "invalid_json"],
    ['{"a":{"x":1,"x":2}}', "invalid_json"],
    ["[1]", "invalid_schema"],
    ["{", "invalid_json"],
    ['{"a": NaN}', "invalid_json"],
    [`${"[".repeat(201)}${"]".repeat(201)}`, "invalid_json"],
  ];
  for (const [text, reason] of cases) assert.throws(() => parseJsonObject(utf8(text)), { reason }, text);
  assert.deepEqual(parseJsonObject(utf8('{"a":{"x":1},"b":{"x":2},"s":"\\"x\\":"}')),
    { a: { x: 1 }, b: { x: 2 }, s: '"x":' });
  assert.throws(() => parseJsonObject(Uint8Array.of(0x7b, 0xff, 0x7d)), { reason: "invalid_json" });
  assert.throws(() => parseJsonObject(new Uint8Array(262145).fill(0x20)), { reason: "too_large" });
  const extra = utf8(canonicalJson({ schema: "datadebit/sealed-purpose/v1",
    sealed: base64Encode(sealTo(owner.publicKey, utf8("{}"))), more: 1 }));
  assert.throws(() => readPurpose(extra, { ownerKey: owner }), { reason: "invalid_schema" });
  const notPurpose = utf8(canonicalJson({ schema: "datadebit/sealed-purpose/v1",
    sealed: base64Encode(sealTo(owner.publicKey, utf8("{}"))) }));
  assert.throws(() => readPurpose(notPurpose, { ownerKey: owner }), { reason: "invalid_schema" });
});
