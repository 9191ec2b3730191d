// Shared by the JS tests: the vector files and small byte helpers.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(here, "..", "..", "..");
export const web = JSON.parse(readFileSync(join(ROOT, "tests", "vectors", "web.json"), "utf8"));
export const keyrelease = JSON.parse(readFileSync(join(ROOT, "tests", "vectors", "keyrelease.json"), "utf8"));
export const cidVectors = JSON.parse(readFileSync(join(ROOT, "tests", "vectors", "cid_vectors.json"), "utf8"));

/** tests/vectors/web.json's content pattern: byte i = (i mod 251) xor (floor(i/251) mod 256). */
const PERIOD = (() => {
  const out = new Uint8Array(251 * 256);
  for (let i = 0; i < out.length; i++) out[i] = (i % 251) ^ (Math.floor(i / 251) % 256);
  return out;
})();

export function pattern(size) {
  const out = new Uint8Array(size);
  for (let pos = 0; pos < size; pos += PERIOD.length) {
    out.set(PERIOD.subarray(0, Math.min(PERIOD.length, size - pos)), pos);
  }
  return out;
}
