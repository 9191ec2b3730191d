// Throughput of the web app's envelope decryption and CID check, in node (the same ES
// modules the browser runs, over the same libsodium WebAssembly).
//
//   node scripts/bench_web_crypto.mjs [megabytes=50] [piece KiB=64]
//
// The envelope (default 1 MiB chunks) is made first, untimed; then it is fed in pieces of
// `piece` KiB, as a fetch() body stream delivers it, to the decryptor and the CID builder:
// each is timed alone and both together (what the download page does per piece).
import { performance } from "node:perf_hooks";
import os from "node:os";
import { randomBytes } from "../marketplace/web/static/js/crypto.js";
import { EnvelopeDecryptor, encryptEnvelope } from "../marketplace/web/static/js/envelope.js";
import { CidBuilder } from "../marketplace/web/static/js/cid.js";

const megabytes = Number(process.argv[2] || 50);
const piece = Number(process.argv[3] || 64) * 1024;
const plain = new Uint8Array(megabytes * 1e6);
for (let i = 0; i < plain.length; i += 65536) plain.set(randomBytes(Math.min(65536, plain.length - i)), i);
const dek = randomBytes(32);
const envelope = encryptEnvelope(dek, plain);

function run(decrypt, cid) {
  const d = new EnvelopeDecryptor(dek);
  const b = new CidBuilder();
  let out = 0;
  const start = performance.now();
  for (let pos = 0; pos < envelope.length; pos += piece) {
    const part = envelope.subarray(pos, pos + piece);
    if (decrypt) for (const c of d.push(part)) out += c.length;
    if (cid) b.update(part);
  }
  if (decrypt) for (const c of d.finish()) out += c.length;
  if (cid) b.finish();
  const seconds = (performance.now() - start) / 1000;
  if (decrypt && out !== plain.length) throw new Error("decrypted size differs");
  return envelope.length / 1e6 / seconds;
}

run(true, true); // warm up the WebAssembly
const best = (f) => Math.max(f(), f(), f());
const cpu = os.cpus()[0]?.model ?? "unknown CPU";
console.log(`${megabytes} MB envelope, ${piece / 1024} KiB pieces, node ${process.version}, ${cpu}`);
console.log(`decrypt only:  ${best(() => run(true, false)).toFixed(0)} MB/s`);
console.log(`CID only:      ${best(() => run(false, true)).toFixed(0)} MB/s`);
console.log(`decrypt + CID: ${best(() => run(true, true)).toFixed(0)} MB/s`);
