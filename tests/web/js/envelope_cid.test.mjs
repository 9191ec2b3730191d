// envelope.js and cid.js against the Python: the vector envelope decrypts in pieces of any
// size, every tamper case Python refuses is refused, and CIDs equal storage/unixfs.py's
// (multi-level trees with small layouts, real-layout sizes) and a real IPFS daemon's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fromHex, toHex, sha256, concatBytes } from "../../../marketplace/web/static/js/crypto.js";
import { EnvelopeDecryptor, EnvelopeError, decryptEnvelope, encryptEnvelope, HEADER_SIZE }
  from "../../../marketplace/web/static/js/envelope.js";
import { CidBuilder, checkCid, cidFromText, cidToText, rawCid, CidError }
  from "../../../marketplace/web/static/js/cid.js";
import { cidVectors, keyrelease, pattern, web } from "./support.mjs";

const env = web.envelope;
const dek = fromHex(env.dek);
const sealed = fromHex(env.envelope);

function decryptInPieces(key, bytes, piece) {
  const d = new EnvelopeDecryptor(key);
  const chunks = [];
  for (let pos = 0; pos < bytes.length; pos += piece) chunks.push(...d.push(bytes.subarray(pos, pos + piece)));
  chunks.push(...d.finish());
  return concatBytes(...chunks);
}

test("the vector envelope decrypts to its plaintext, fed in pieces of any size", () => {
  for (const piece of [1, 7, 16, 64, 1016, 1017, 1018, 4096, sealed.length]) {
    const plain = decryptInPieces(dek, sealed, piece);
    assert.equal(plain.length, env.plaintextSize);
    assert.equal(toHex(sha256(plain)), env.plaintextSha256, `piece ${piece}`);
  }
  assert.deepEqual(decryptEnvelope(dek, sealed), pattern(env.plaintextSize));
});

test("keyrelease.json's envelope (chunk size 16) decrypts too", () => {
  const v = keyrelease.envelope;
  assert.equal(toHex(decryptEnvelope(fromHex(v.dataKey), fromHex(v.envelope))), v.plaintext);
  const b = new CidBuilder();
  b.update(fromHex(v.envelope));
  assert.equal(b.finish(), v.cid);
  assert.equal(toHex(b.cidBytes), v.cidBinary);
});

function applyOps(ops) {
  let data = sealed.slice();
  let key = dek;
  for (const op of ops) {
    if (op.op === "flip") data[op.offset] ^= 1;
    else if (op.op === "set") data[op.offset] = op.value;
    else if (op.op === "cut") data = data.slice(0, op.length);
    else if (op.op === "append") data = concatBytes(data, fromHex(op.bytes));
    else if (op.op === "swap") {
      const a = data.slice(op.a, op.a + op.length);
      data.set(data.slice(op.b, op.b + op.length), op.a);
      data.set(a, op.b);
    } else if (op.op === "key") key = fromHex(op.key);
    else throw new Error(`unknown op ${op.op}`);
  }
  return { data, key };
}

test("every tamper case of the vectors is refused with its code, at any piece size", () => {
  assert.ok(env.tamper.length >= 10);
  for (const tcase of env.tamper) {
    const { data, key } = applyOps(tcase.ops);
    for (const piece of [1, 333, data.length || 1]) {
      assert.throws(() => decryptInPieces(key, data, piece),
        (e) => e instanceof EnvelopeError && e.code === tcase.code, `${tcase.name} (piece ${piece})`);
    }
  }
});

test("bytes after a full-size FINAL frame are refused; the decryptor stays refused", () => {
  const plain = pattern(64);
  const whole = encryptEnvelope(dek, plain, 32); // two full frames, the second FINAL
  assert.deepEqual(decryptEnvelope(dek, whole), plain);
  const d = new EnvelopeDecryptor(dek);
  assert.throws(() => d.push(concatBytes(whole, Uint8Array.of(0))), { code: "trailing_data" });
  assert.throws(() => d.finish(), { code: "trailing_data" });
  assert.throws(() => decryptEnvelope(dek, concatBytes(whole, whole.subarray(HEADER_SIZE))), { code: "trailing_data" });
});

test("a frame dropped from the middle, or a MESSAGE frame cut short at the end, is refused", () => {
  const frame = env.chunkSize + 17;
  const dropped = concatBytes(sealed.subarray(0, HEADER_SIZE + frame), sealed.subarray(HEADER_SIZE + 2 * frame));
  assert.throws(() => decryptEnvelope(dek, dropped), { code: "chunk_rejected" });
  const empty = encryptEnvelope(dek, new Uint8Array(0), 16);
  assert.equal(empty.length, HEADER_SIZE + 17);
  assert.equal(decryptEnvelope(dek, empty).length, 0);
  assert.throws(() => decryptEnvelope(dek, empty.subarray(0, HEADER_SIZE)), { code: "truncated" });
  assert.throws(() => decryptEnvelope(dek, new Uint8Array(0)), { code: "truncated" });
  assert.throws(() => new EnvelopeDecryptor(new Uint8Array(31)), { code: "wrong_key" });
});

test("JS-made envelopes have the Python's sizes and decrypt", () => {
  for (const [size, chunk] of [[0, 5], [5, 5], [6, 5], [1000, 7], [3000, 1 << 20]]) {
    const plain = pattern(size);
    const e = encryptEnvelope(dek, plain, chunk);
    assert.equal(e.length, HEADER_SIZE + size + 17 * Math.max(1, Math.ceil(size / chunk)));
    assert.deepEqual(decryptInPieces(dek, e, 13), plain);
  }
});

test("CIDs equal storage/unixfs.py's: one raw leaf, full nodes, two to four levels", () => {
  assert.ok(web.cids.cases.length >= 15);
  for (const v of web.cids.cases) {
    const data = pattern(v.size);
    for (const piece of v.size > 1e6 ? [1 << 20, 262143] : [1, 3, 1000]) {
      const b = new CidBuilder({ chunkSize: v.chunkSize, maxLinks: v.maxLinks });
      for (let pos = 0; pos < data.length; pos += piece) b.update(data.subarray(pos, pos + piece));
      assert.equal(b.finish(), v.cid, `size ${v.size} chunk ${v.chunkSize} links ${v.maxLinks} piece ${piece}`);
      assert.equal(b.size, v.size);
    }
  }
});

/** cid_vectors.json's content: sha256(tag || i as 8 bytes BE) for i = 0.., cut to the period, repeated. */
function daemonPattern(size) {
  const { tag, period } = cidVectors.pattern;
  const base = new Uint8Array(period);
  const prefix = new TextEncoder().encode(tag);
  for (let i = 0, pos = 0; pos < period; i++, pos += 32) {
    const counter = new Uint8Array(8);
    new DataView(counter.buffer).setBigUint64(0, BigInt(i));
    const digest = createHash("sha256").update(prefix).update(counter).digest();
    base.set(digest.subarray(0, Math.min(32, period - pos)), pos);
  }
  const out = new Uint8Array(size);
  for (let pos = 0; pos < size; pos += period) out.set(base.subarray(0, Math.min(period, size - pos)), pos);
  return out;
}

test("CIDs equal a real IPFS daemon's (cid_vectors.json, every case up to 50 MB)", () => {
  const cases = cidVectors.vectors.filter((v) => v.size <= 50_000_000);
  assert.equal(cases.length, 9); // the two 7.9 GB three-level cases run in Python only
  for (const v of cases) {
    const data = v.content === "literal" ? new TextEncoder().encode(v.text) : daemonPattern(v.size);
    const b = new CidBuilder();
    b.update(data);
    assert.equal(b.finish(), v.cid, v.name);
  }
});

test("CID text and binary convert both ways; a mismatch is detected", () => {
  const bin = fromHex(web.release.cidBytes);
  assert.equal(cidToText(bin), web.release.cid);
  assert.deepEqual(cidFromText(web.release.cid), bin);
  assert.equal(cidToText(rawCid(new TextEncoder().encode("hello world\n"))),
    "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
  for (const bad of ["", "Bafy", "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei",
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "bafkqaaa"]) {
    assert.throws(() => cidFromText(bad), CidError, bad);
  }
  const tampered = sealed.slice();
  tampered[3000] ^= 1;
  assert.throws(() => checkCid(tampered, env.cid), { code: "cid_mismatch" });
  assert.throws(() => checkCid(sealed.subarray(1), env.cid), { code: "cid_mismatch" });
  assert.equal(checkCid(sealed, env.cid), env.cid);
  assert.equal(checkCid(sealed, cidFromText(env.cid)), env.cid);
  const b = new CidBuilder();
  b.finish();
  assert.throws(() => b.update(new Uint8Array(1)), { code: "finished" });
});
