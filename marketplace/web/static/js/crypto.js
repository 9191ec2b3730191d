// The buyer's and owner's cryptography in the browser (docs/protocol.md §3-§8), over
// libsodium-sumo: the edwards25519 group, hash-to-scalar, the capsule (§5), key shares and
// their DLEQ proofs (§6), the Lagrange combine (§7), the X25519 keys derived from a wallet
// signature (§8, §17.4) and sealed boxes. Every point received from outside is checked with
// crypto_core_ed25519_is_valid_point, every scalar for canonical encoding (< L).
// Byte strings are Uint8Array; scalars are 32 bytes little-endian.
import _sodium from "libsodium-wrappers-sumo";

await _sodium.ready;
const sodium = _sodium;

/** The order of the prime-order subgroup of edwards25519 (and of the scalar field). */
export const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const P25519 = 2n ** 255n - 19n;
const IDENTITY = new Uint8Array(32);
IDENTITY[0] = 1;

export const CAPSULE_SIZE = 168;
export const KEY_SHARE_SIZE = 133;
export const SEALED_SHARE_SIZE = 181;
export const SEAL_OVERHEAD = 48;
export const BUYER_KEY_PURPOSE = "datadebit buyer encryption key v1";
export const OWNER_KEY_PURPOSE = "datadebit owner encryption key v1";

/** A cryptographic check failed or an input is malformed; `code` is stable, e.g.
 * "invalid_point", "capsule_not_bound", "invalid_share_proof". */
export class CryptoError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "CryptoError";
    this.code = code;
  }
}

// -- bytes ------------------------------------------------------------------------------

const utf8Encoder = new TextEncoder();

export function utf8(text) {
  return utf8Encoder.encode(text);
}

export function fromHex(text, what = "hex string") {
  if (typeof text !== "string" || !/^0x([0-9a-fA-F]{2})*$/.test(text)) {
    throw new CryptoError("malformed", `${what} is not 0x followed by pairs of hex digits`);
  }
  const out = new Uint8Array((text.length - 2) / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 + 2 * i, 4 + 2 * i), 16);
  return out;
}

export function toHex(bytes) {
  let out = "0x";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** `value` (number or bigint, 0 ≤ value < 2^(8·size)) as `size` bytes big-endian. */
export function uintBE(value, size, what = "integer") {
  let n = BigInt(value);
  if (n < 0n || n >= 1n << BigInt(8 * size)) {
    throw new CryptoError("malformed", `${what} does not fit ${size} bytes`);
  }
  const out = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

function readBE(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function readLE(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

export function sha256(bytes) {
  return sodium.crypto_hash_sha256(bytes);
}

export function base64Decode(text, what = "base64") {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
    throw new CryptoError("malformed", `${what} is not standard base64`);
  }
  try {
    return sodium.from_base64(text, sodium.base64_variants.ORIGINAL);
  } catch {
    throw new CryptoError("malformed", `${what} is not standard base64`);
  }
}

export function base64Encode(bytes) {
  return sodium.to_base64(bytes, sodium.base64_variants.ORIGINAL);
}

export function randomBytes(size) {
  return sodium.randombytes_buf(size);
}

// -- the group (§3) ---------------------------------------------------------------------

/** `datadebit/<name>/v1` as bytes. */
export function tag(name) {
  return utf8(`datadebit/${name}/v1`);
}

export function isValidPoint(bytes) {
  return bytes instanceof Uint8Array && bytes.length === 32
    && sodium.crypto_core_ed25519_is_valid_point(bytes);
}

/** A point from outside: canonical, on the curve, in the subgroup, not small order. */
export function pointFromBytes(bytes, what = "point") {
  if (!isValidPoint(bytes)) throw new CryptoError("invalid_point", `${what} is not a valid point`);
  return Uint8Array.from(bytes);
}

/** A scalar from outside: 32 bytes, < L (no second encoding). */
export function scalarFromBytes(bytes, what = "scalar") {
  if (!(bytes instanceof Uint8Array) || bytes.length !== 32 || readLE(bytes) >= L) {
    throw new CryptoError("invalid_scalar", `${what} is not a canonical scalar`);
  }
  return Uint8Array.from(bytes);
}

export function scalarFromBigInt(value) {
  let n = ((BigInt(value) % L) + L) % L;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

export function scalarToBigInt(bytes) {
  return readLE(bytes);
}

const isZero = (bytes) => bytes.every((b) => b === 0);
const isIdentity = (point) => bytesEqual(point, IDENTITY);

/** scalar·G (the identity for 0, which libsodium refuses). */
export function baseMul(scalar) {
  if (isZero(scalar)) return Uint8Array.from(IDENTITY);
  return sodium.crypto_scalarmult_ed25519_base_noclamp(scalar);
}

/** scalar·point for a subgroup point (the identity for 0 or the identity). */
export function pointMul(point, scalar) {
  if (isZero(scalar) || isIdentity(point)) return Uint8Array.from(IDENTITY);
  try {
    return sodium.crypto_scalarmult_ed25519_noclamp(scalar, point);
  } catch {
    throw new CryptoError("invalid_point", "scalar multiplication refused the point");
  }
}

export function pointAdd(a, b) {
  return sodium.crypto_core_ed25519_add(a, b);
}

export function pointSub(a, b) {
  return sodium.crypto_core_ed25519_sub(a, b);
}

/** Hs(tag, parts) = BLAKE2b-512(tag || parts) mod L. */
export function hashToScalar(domainTag, ...parts) {
  const digest = sodium.crypto_generichash(64, concatBytes(domainTag, ...parts), null);
  return sodium.crypto_core_ed25519_scalar_reduce(digest);
}

// -- capsule (§5) -----------------------------------------------------------------------

/** ctx = "datadebit/ctx/v1" || chainId (32 BE) || market (20) || listingId (32 BE)
 * || version (4 BE) || cid bytes. */
export function encodeContext({ chainId, market, listingId, version, cidBytes }) {
  if (typeof market !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(market)) {
    throw new CryptoError("malformed", "market must be a 20-byte 0x address");
  }
  if (!(Number(version) >= 1)) throw new CryptoError("malformed", "version must be ≥ 1");
  if (!(cidBytes instanceof Uint8Array) || cidBytes.length === 0) {
    throw new CryptoError("malformed", "the CID must not be empty");
  }
  return concatBytes(
    tag("ctx"),
    uintBE(chainId, 32, "chainId"),
    fromHex(market),
    uintBE(listingId, 32, "listingId"),
    uintBE(version, 4, "version"),
    cidBytes,
  );
}

/** Parse a 168-byte capsule: R a valid point, (c, s) canonical scalars. */
export function parseCapsule(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length !== CAPSULE_SIZE) {
    throw new CryptoError("invalid_capsule", `the capsule is not ${CAPSULE_SIZE} bytes`);
  }
  if (!isValidPoint(bytes.subarray(0, 32))) {
    throw new CryptoError("invalid_capsule", "the capsule's R is not a valid point");
  }
  const c = bytes.subarray(104, 136);
  const s = bytes.subarray(136, 168);
  if (readLE(c) >= L || readLE(s) >= L) {
    throw new CryptoError("invalid_capsule", "the capsule's proof is not two canonical scalars");
  }
  return {
    r: bytes.slice(0, 32),
    nonce: bytes.slice(32, 56),
    sealedKey: bytes.slice(56, 104),
    c: c.slice(),
    s: s.slice(),
  };
}

/** Check the capsule's Schnorr proof against ctx (§5.3); throws "capsule_not_bound". */
export function verifyCapsule(capsule, ctx) {
  const commitment = pointSub(baseMul(capsule.s), pointMul(capsule.r, capsule.c));
  const c = hashToScalar(tag("capsule-proof"), capsule.r, commitment, capsule.nonce,
    capsule.sealedKey, ctx);
  if (!bytesEqual(c, capsule.c)) {
    throw new CryptoError("capsule_not_bound",
      "the capsule's proof does not bind it to this listing, version and CID");
  }
}

/** K = BLAKE2b-256("datadebit/kem/v1" || R || Z). */
export function kemKey(r, z) {
  return sodium.crypto_generichash(32, concatBytes(tag("kem"), r, z), null);
}

/** The DEK, given Z = r·Y; throws "capsule_open_failed" (wrong ctx or wrong Z). */
export function openCapsule(capsule, ctx, z) {
  try {
    return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
      null, capsule.sealedKey, ctx, capsule.nonce, kemKey(capsule.r, z));
  } catch {
    throw new CryptoError("capsule_open_failed",
      "the capsule does not open (wrong context or wrong key shares)");
  }
}

// -- shares (§6) ------------------------------------------------------------------------

/** Parse an opened 133-byte share; points and scalars validated. */
export function parseKeyShare(bytes) {
  if (bytes.length !== KEY_SHARE_SIZE) {
    throw new CryptoError("malformed_share", `the share is ${bytes.length} bytes, not 133`);
  }
  const index = bytes[0];
  if (index === 0) throw new CryptoError("malformed_share", "the share names node index 0");
  return {
    index,
    d: pointFromBytes(bytes.subarray(1, 33), `D_i of node ${index}`),
    c: scalarFromBytes(bytes.subarray(33, 65), `proof challenge of node ${index}`),
    z: scalarFromBytes(bytes.subarray(65, 97), `proof response of node ${index}`),
    debitId: readBE(bytes.subarray(97, 129)),
    version: Number(readBE(bytes.subarray(129, 133))),
  };
}

/** Open a 181-byte sealed share with the buyer's X25519 key pair and check it answers
 * (debitId, version); the result still needs `verifyShare`. */
export function openSealedShare(sealed, buyerKey, debitId, version) {
  if (!(sealed instanceof Uint8Array) || sealed.length !== SEALED_SHARE_SIZE) {
    throw new CryptoError("malformed_share", `the sealed share is not ${SEALED_SHARE_SIZE} bytes`);
  }
  let plain;
  try {
    plain = sodium.crypto_box_seal_open(sealed, buyerKey.publicKey, buyerKey.privateKey);
  } catch {
    throw new CryptoError("sealed_share_open_failed",
      "the sealed share does not open with this buyer key");
  }
  const share = parseKeyShare(plain);
  if (share.debitId !== BigInt(debitId) || share.version !== Number(version)) {
    throw new CryptoError("share_mismatch",
      `the share is for debit ${share.debitId} version ${share.version}, `
      + `not debit ${debitId} version ${version}`);
  }
  return share;
}

/** The DLEQ check of §6.1 against Y_i (from the chain) and the capsule's R; throws
 * "invalid_share_proof". */
export function verifyShare(share, shareKey, capsuleR) {
  const y = pointFromBytes(shareKey, `share key of node ${share.index}`);
  const a1 = pointSub(baseMul(share.z), pointMul(y, share.c));
  const a2 = pointSub(pointMul(capsuleR, share.z), pointMul(share.d, share.c));
  const c = hashToScalar(tag("dleq"), y, capsuleR, share.d, a1, a2);
  if (!bytesEqual(c, share.c)) {
    throw new CryptoError("invalid_share_proof",
      `node ${share.index}'s share fails its proof against its on-chain share key`);
  }
}

// -- combine (§7) -----------------------------------------------------------------------

function modPow(base, exp, mod) {
  let result = 1n;
  base %= mod;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
    exp >>= 1n;
  }
  return result;
}

/** λ_i = Π_{j≠i} j / (j − i) mod L, for distinct indices: Map index → scalar bytes. */
export function lagrangeCoefficients(indices) {
  const set = indices.map((i) => BigInt(i));
  if (new Set(set).size !== set.length || set.some((i) => i <= 0n)) {
    throw new CryptoError("malformed", "Lagrange indices must be distinct and positive");
  }
  const out = new Map();
  for (const i of set) {
    let num = 1n;
    let den = 1n;
    for (const j of set) {
      if (j === i) continue;
      num = (num * j) % L;
      den = (((den * (j - i)) % L) + L) % L;
    }
    out.set(Number(i), scalarFromBigInt(num * modPow(den, L - 2n, L)));
  }
  return out;
}

/** Z = Σ λ_i·D_i over the t lowest indices of `shares` ([{index, d}], verified). */
export function combineShares(shares, threshold) {
  const byIndex = new Map();
  for (const share of shares) {
    if (byIndex.has(share.index)) {
      throw new CryptoError("duplicate_share", `two shares of node ${share.index}`);
    }
    byIndex.set(share.index, share);
  }
  if (byIndex.size < threshold) {
    throw new CryptoError("not_enough_shares",
      `${byIndex.size} shares, the threshold is ${threshold}`);
  }
  const chosen = [...byIndex.keys()].sort((a, b) => a - b).slice(0, threshold);
  let z = Uint8Array.from(IDENTITY);
  for (const [index, lambda] of lagrangeCoefficients(chosen)) {
    z = pointAdd(z, pointMul(byIndex.get(index).d, lambda));
  }
  return z;
}

/** The DEK from verified shares of one epoch: combine, then open the capsule. */
export function recoverDataKey(capsule, ctx, shares, threshold) {
  return openCapsule(capsule, ctx, combineShares(shares, threshold));
}

// -- X25519 keys from a wallet signature (§8, §17.4) ------------------------------------

/** r || low-s || v (27/28): wallets differ only in these encodings. */
export function canonicalSignature(signature) {
  if (!(signature instanceof Uint8Array) || signature.length !== 65) {
    throw new CryptoError("invalid_signature", "a signature is 65 bytes");
  }
  let v = signature[64];
  if (v === 27 || v === 28) v -= 27;
  else if (v !== 0 && v !== 1) throw new CryptoError("invalid_signature", "v must be 0, 1, 27 or 28");
  const r = readBE(signature.subarray(0, 32));
  let s = readBE(signature.subarray(32, 64));
  if (!(r > 0n && r < SECP256K1_N && s > 0n && s < SECP256K1_N)) {
    throw new CryptoError("invalid_signature", "r or s is out of range");
  }
  if (s > SECP256K1_N / 2n) {
    s = SECP256K1_N - s;
    v ^= 1;
  }
  return concatBytes(signature.subarray(0, 32), uintBE(s, 32), Uint8Array.of(27 + v));
}

/** The X25519 key pair of §8 from the wallet's EncryptionKey signature (0x-hex or bytes):
 * secret = BLAKE2b-256("datadebit/x25519/v1" || canonical signature). The same function
 * gives the owner key (§17.4) from the owner-purpose signature. */
export function x25519KeyFromSignature(signature) {
  const sig = typeof signature === "string" ? fromHex(signature, "signature") : signature;
  const privateKey = sodium.crypto_generichash(32,
    concatBytes(tag("x25519"), canonicalSignature(sig)), null);
  return { publicKey: sodium.crypto_scalarmult_base(privateKey), privateKey };
}

export const buyerKeyFromSignature = x25519KeyFromSignature;
export const ownerKeyFromSignature = x25519KeyFromSignature;

const SMALL_ORDER_U = new Set([
  0n,
  1n,
  P25519 - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);

/** Whether a 32-byte X25519 public key is a point of order 1, 2, 4 or 8 (any encoding). */
export function isSmallOrderX25519(key) {
  let u = readLE(key) & ((1n << 255n) - 1n);
  if (u >= P25519) u -= P25519;
  return SMALL_ORDER_U.has(u);
}

/** crypto_box_seal to an X25519 public key (refuses small-order keys). */
export function sealTo(publicKey, plaintext) {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32 || isSmallOrderX25519(publicKey)) {
    throw new CryptoError("invalid_key", "not an X25519 key anything can be sealed to");
  }
  return sodium.crypto_box_seal(plaintext, publicKey);
}

/** crypto_box_seal_open with a key pair; throws "open_failed". */
export function openSealed(sealed, keyPair) {
  try {
    return sodium.crypto_box_seal_open(sealed, keyPair.publicKey, keyPair.privateKey);
  } catch {
    throw new CryptoError("open_failed", "this key does not open the sealed box");
  }
}
