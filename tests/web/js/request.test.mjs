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

// ownerKeyFromChain: the key a purpose is sealed to comes from the listing's document on
// chain (its CID in ListingCreated), never from what the web server rendered.
function fakeMarket(uri) {
  return {
    filters: { ListingCreated: (id) => ({ id }) },
    queryFilter: async (filter) => (uri === null ? [] : [{ args: { listingId: filter.id, metadataURI: uri } }]),
  };
}

function served(bytes, status = 200) {
  return async () => ({ ok: status === 200, status, arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
}

test("the owner key is read from the document the chain names, checked against its CID", async () => {
  const { ownerKeyFromChain } = await import("../../../marketplace/web/static/js/request.js");
  const { rawCid, cidToText } = await import("../../../marketplace/web/static/js/cid.js");
  const key = "0x" + "ab".repeat(32);
  const doc = new TextEncoder().encode(JSON.stringify({ schema: "datadebit/listing/v1", title: "t", ownerKey: key }));
  const cid = cidToText(rawCid(doc));
  assert.equal(await ownerKeyFromChain(fakeMarket(`ipfs://${cid}`), 1n, 5, served(doc)), key);
  const swapped = new TextEncoder().encode(JSON.stringify({ schema: "datadebit/listing/v1", title: "t", ownerKey: "0x" + "cd".repeat(32) }));
  await assert.rejects(ownerKeyFromChain(fakeMarket(`ipfs://${cid}`), 1n, 5, served(swapped)), /CID mismatch/);
  await assert.rejects(ownerKeyFromChain(fakeMarket(null), 1n, 5, served(doc)), /no ListingCreated event/);
  await assert.rejects(ownerKeyFromChain(fakeMarket(`ipfs://${cid}`), 1n, 5, served(doc, 404)), /HTTP 404/);
  const keyless = new TextEncoder().encode(JSON.stringify({ schema: "datadebit/listing/v1", title: "t" }));
  assert.equal(await ownerKeyFromChain(fakeMarket(`ipfs://${cidToText(rawCid(keyless))}`), 1n, 5, served(keyless)), null);
});
