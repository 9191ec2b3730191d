// crypto.js and typed.js against the Python's vectors (tests/vectors/keyrelease.json and
// web.json), and the refusals: invalid points, non-canonical scalars, a tampered capsule,
// a share that fails its proof, a share for another debit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Wallet, TypedDataEncoder } from "ethers";
import * as c from "../../../marketplace/web/static/js/crypto.js";
import { encryptionKeyTypedData, eip712Domain, keyRequestBody, keyRequestTypedData }
  from "../../../marketplace/web/static/js/typed.js";
import { keyrelease as kr, web } from "./support.mjs";

const hex = c.fromHex;
const release = web.release;
const buyer = c.x25519KeyFromSignature(web.keys.buyer.signature);

test("hash-to-scalar and L match the Python", () => {
  assert.equal(c.L.toString(), kr.group.L);
  assert.equal(c.toHex(c.baseMul(c.scalarFromBigInt(1n))), kr.group.basePoint);
  for (const v of kr.group.hashToScalar) {
    const got = c.hashToScalar(c.utf8(v.tag), ...v.parts.map((p) => hex(p)));
    assert.equal(c.toHex(got), v.scalar);
  }
});

test("dealer share keys are s_i·G", () => {
  for (const s of kr.dealer.shares) assert.equal(c.toHex(c.baseMul(hex(s.secret))), s.shareKey);
});

test("the capsule context encodes as the Python's", () => {
  const ctx = kr.capsule.context;
  const encoded = c.encodeContext({ chainId: ctx.chainId, market: ctx.market,
    listingId: ctx.listingId, version: ctx.version, cidBytes: hex(ctx.cid) });
  assert.equal(c.toHex(encoded), ctx.encoded);
  assert.equal(c.toHex(c.encodeContext({ ...release.config, listingId: release.listingId,
    version: release.version, cidBytes: hex(release.cidBytes) })), release.context);
});

test("keyrelease.json: capsule verifies, opens with z; KEM key matches", () => {
  const cap = c.parseCapsule(hex(kr.capsule.capsule));
  const ctx = hex(kr.capsule.context.encoded);
  c.verifyCapsule(cap, ctx);
  assert.equal(c.toHex(c.kemKey(cap.r, hex(kr.capsule.z))), kr.capsule.kemKey);
  assert.equal(c.toHex(c.openCapsule(cap, ctx, hex(kr.capsule.z))), kr.capsule.dek);
});

test("keyrelease.json: every share verifies; Lagrange sets give Z", () => {
  const cap = c.parseCapsule(hex(kr.capsule.capsule));
  const shares = new Map();
  for (const v of kr.shares) {
    const share = c.parseKeyShare(hex(v.plaintext));
    c.verifyShare(share, hex(kr.dealer.shares[v.index - 1].shareKey), cap.r);
    shares.set(v.index, share);
  }
  for (const combo of kr.combine) {
    const lambdas = c.lagrangeCoefficients(combo.indices);
    assert.deepEqual(combo.indices.map((i) => c.toHex(lambdas.get(i))), combo.lagrange);
    const z = c.combineShares(combo.indices.map((i) => shares.get(i)), kr.dealer.t);
    assert.equal(c.toHex(z), combo.z);
  }
});

test("keyrelease.json: the buyer key from the signature opens node 1's sealed share", () => {
  const key = c.x25519KeyFromSignature(kr.buyer.encryptionKeySignature);
  assert.equal(c.toHex(key.privateKey), kr.buyer.x25519Secret);
  assert.equal(c.toHex(key.publicKey), kr.buyer.x25519Public);
  const share = c.openSealedShare(hex(kr.buyer.sealedShare), key, 42, 1);
  assert.equal(share.index, 1);
  assert.equal(c.toHex(share.d), kr.shares[0].d);
});

test("web.json: buyer and owner keys from their EncryptionKey signatures, any encoding", () => {
  for (const role of ["buyer", "owner"]) {
    const v = web.keys[role];
    for (const sig of [v.signature, ...v.signatureVariants]) {
      const key = c.x25519KeyFromSignature(sig);
      assert.equal(c.toHex(key.publicKey), v.x25519Public, `${role} ${sig}`);
      assert.equal(c.toHex(key.privateKey), v.x25519Secret);
    }
  }
  assert.notEqual(web.keys.buyer.x25519Public, web.keys.owner.x25519Public);
});

test("a malformed signature gives no key", () => {
  const sig = hex(web.keys.buyer.signature);
  for (const bad of [sig.slice(0, 64), c.concatBytes(sig.slice(0, 64), Uint8Array.of(29)),
    c.concatBytes(new Uint8Array(32), sig.slice(32))]) {
    assert.throws(() => c.x25519KeyFromSignature(bad), { code: "invalid_signature" });
  }
});

test("typed data equals the Python's, and ethers signs it to the Python's signatures", async () => {
  const domain = eip712Domain(web.keys.domain);
  assert.deepEqual(encryptionKeyTypedData(domain, "buyer"), web.keys.buyer.typedData);
  assert.deepEqual(encryptionKeyTypedData(domain, "owner"), web.keys.owner.typedData);
  const req = web.keyRequest.request;
  const request = { debitId: req.debitId, version: req.version, expiry: req.expiry, nonce: hex(req.nonce) };
  const typed = keyRequestTypedData(domain, request);
  assert.deepEqual(typed, web.keyRequest.typedData);
  const wallet = new Wallet(web.keys.buyer.walletKey);
  const sign = (td) => {
    const types = { ...td.types };
    delete types.EIP712Domain;
    return wallet.signTypedData(td.domain, types, td.message);
  };
  assert.equal(await sign(typed), web.keyRequest.signature);
  assert.equal(await sign(encryptionKeyTypedData(domain, "buyer")), web.keys.buyer.signature);
  const ownerWallet = new Wallet(web.keys.owner.walletKey);
  const td = encryptionKeyTypedData(domain, "owner");
  assert.equal(await ownerWallet.signTypedData(td.domain, { EncryptionKey: td.types.EncryptionKey }, td.message),
    web.keys.owner.signature);
  assert.equal(TypedDataEncoder.hash(td.domain, { EncryptionKey: td.types.EncryptionKey }, td.message),
    TypedDataEncoder.hash(web.keys.owner.typedData.domain, { EncryptionKey: td.types.EncryptionKey },
      web.keys.owner.typedData.message));
  const body = JSON.parse(keyRequestBody(request, web.keyRequest.signature));
  assert.deepEqual(body, { request: req, signature: web.keyRequest.signature });
  assert.equal(keyRequestBody({ ...request, debitId: 2n ** 70n }, web.keyRequest.signature)
    .includes(`"debitId":${2n ** 70n}`), true);
  assert.throws(() => keyRequestTypedData(domain, { ...request, version: 2 ** 32 }), RangeError);
  assert.throws(() => keyRequestTypedData(domain, { ...request, debitId: -1 }), RangeError);
  assert.throws(() => keyRequestTypedData(domain, { ...request, nonce: new Uint8Array(31) }), RangeError);
});

test("web.json release: all three shares verify and any two give the DEK", () => {
  const cap = c.parseCapsule(hex(release.capsule));
  const ctx = hex(release.context);
  c.verifyCapsule(cap, ctx);
  const keys = release.committees["1"].shareKeys.map((k) => hex(k));
  const shares = release.answers.map((a) => {
    const s = c.openSealedShare(c.base64Decode(a.sealedShare), buyer, release.debitId, release.version);
    assert.equal(s.index, a.node);
    c.verifyShare(s, keys[s.index - 1], cap.r);
    return s;
  });
  for (const pair of [[0, 1], [0, 2], [1, 2]]) {
    const dek = c.recoverDataKey(cap, ctx, pair.map((i) => shares[i]), 2);
    assert.equal(c.toHex(dek), release.dek);
  }
  assert.throws(() => c.recoverDataKey(cap, ctx, [shares[0]], 2), { code: "not_enough_shares" });
  assert.throws(() => c.recoverDataKey(cap, ctx, [shares[0], shares[0]], 2), { code: "duplicate_share" });
});

test("the corrupted share fails its proof, and so does a share checked against another key", () => {
  const cap = c.parseCapsule(hex(release.capsule));
  const keys = release.committees["1"].shareKeys.map((k) => hex(k));
  const bad = c.openSealedShare(c.base64Decode(release.corruptedAnswer.sealedShare), buyer,
    release.debitId, release.version);
  assert.throws(() => c.verifyShare(bad, keys[1], cap.r), { code: "invalid_share_proof", message: /node 2/ });
  const good = c.openSealedShare(c.base64Decode(release.answers[0].sealedShare), buyer,
    release.debitId, release.version);
  assert.throws(() => c.verifyShare(good, keys[1], cap.r), { code: "invalid_share_proof" });
  const epoch2Key = hex(release.committees["2"].shareKeys[0]);
  assert.throws(() => c.verifyShare(good, epoch2Key, cap.r), { code: "invalid_share_proof" });
});

test("a share for another debit or version, or sealed to someone else, is refused", () => {
  const sealed = c.base64Decode(release.answers[0].sealedShare);
  assert.throws(() => c.openSealedShare(sealed, buyer, release.debitId + 1, release.version), { code: "share_mismatch" });
  assert.throws(() => c.openSealedShare(sealed, buyer, release.debitId, release.version + 1), { code: "share_mismatch" });
  const owner = c.x25519KeyFromSignature(web.keys.owner.signature);
  assert.throws(() => c.openSealedShare(sealed, owner, release.debitId, release.version), { code: "sealed_share_open_failed" });
  const flipped = sealed.slice();
  flipped[100] ^= 1;
  assert.throws(() => c.openSealedShare(flipped, buyer, release.debitId, release.version), { code: "sealed_share_open_failed" });
  assert.throws(() => c.openSealedShare(sealed.slice(0, 180), buyer, release.debitId, release.version), { code: "malformed_share" });
});

test("a tampered capsule is refused: any byte of R, nonce, sealed key or proof, or another ctx", () => {
  const raw = hex(release.capsule);
  const ctx = hex(release.context);
  for (const offset of [0, 31, 32, 55, 56, 103, 104, 135, 136, 167]) {
    const bad = raw.slice();
    bad[offset] ^= 1;
    assert.throws(() => c.verifyCapsule(c.parseCapsule(bad), ctx),
      (e) => ["invalid_capsule", "capsule_not_bound"].includes(e.code), `offset ${offset}`);
  }
  const cap = c.parseCapsule(raw);
  const otherCtx = c.encodeContext({ ...release.config, listingId: release.listingId + 1,
    version: release.version, cidBytes: hex(release.cidBytes) });
  assert.throws(() => c.verifyCapsule(cap, otherCtx), { code: "capsule_not_bound" });
  assert.throws(() => c.parseCapsule(raw.slice(0, 167)), { code: "invalid_capsule" });
  // the right Z under the wrong context does not open it either
  const z = c.combineShares(release.answers.slice(0, 2).map((a) => c.openSealedShare(
    c.base64Decode(a.sealedShare), buyer, release.debitId, release.version)), 2);
  assert.throws(() => c.openCapsule(cap, otherCtx, z), { code: "capsule_open_failed" });
  assert.equal(c.toHex(c.openCapsule(cap, hex(release.context), z)), release.dek);
});

test("a non-canonical proof scalar in a capsule is refused", () => {
  const raw = hex(release.capsule);
  const big = c.concatBytes(raw.slice(0, 136), c.scalarFromBigInt(0n).map((_, i) => (i === 31 ? 0xff : 0xff)));
  assert.throws(() => c.parseCapsule(big), { code: "invalid_capsule" });
  const s = c.scalarToBigInt(raw.slice(136));
  const plusL = new Uint8Array(32);
  let n = s + c.L;
  for (let i = 0; i < 32; i++) { plusL[i] = Number(n & 0xffn); n >>= 8n; }
  assert.throws(() => c.parseCapsule(c.concatBytes(raw.slice(0, 136), plusL)), { code: "invalid_capsule" });
});

test("invalid points are refused: identity, small order, non-canonical, off-curve", () => {
  const identity = new Uint8Array(32);
  identity[0] = 1;
  const minusOne = hex("0xecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"); // order 2
  const zero = new Uint8Array(32); // order 4
  const nonCanonical = hex("0xedffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
  const mixed = c.pointAdd(hex(kr.group.basePoint), minusOne); // G + a point of order 2
  for (const p of [identity, minusOne, zero, nonCanonical, mixed, new Uint8Array(31)]) {
    assert.equal(c.isValidPoint(p), false);
    assert.throws(() => c.pointFromBytes(p), { code: "invalid_point" });
  }
  assert.equal(c.isValidPoint(hex(kr.group.basePoint)), true);
  // a capsule whose R is of small order, a share whose D_i is, a share key that is
  const raw = hex(release.capsule);
  assert.throws(() => c.parseCapsule(c.concatBytes(minusOne, raw.slice(32))), { code: "invalid_capsule" });
  const share = c.openSealedShare(c.base64Decode(release.answers[0].sealedShare), buyer, release.debitId, release.version);
  const plain = c.concatBytes(Uint8Array.of(1), mixed, share.c, share.z, c.uintBE(release.debitId, 32), c.uintBE(release.version, 4));
  assert.throws(() => c.parseKeyShare(plain), { code: "invalid_point" });
  assert.throws(() => c.verifyShare(share, identity, c.parseCapsule(raw).r), { code: "invalid_point" });
});

test("small-order X25519 keys: same verdicts as the Python; nothing is sealed to them", () => {
  for (const v of kr.smallOrderBuyerKeys) {
    assert.equal(c.isSmallOrderX25519(hex(v.key)), v.smallOrder, v.key);
    if (v.smallOrder) assert.throws(() => c.sealTo(hex(v.key), c.utf8("x")), { code: "invalid_key" });
  }
  const sealed = c.sealTo(buyer.publicKey, c.utf8("hello"));
  assert.equal(new TextDecoder().decode(c.openSealed(sealed, buyer)), "hello");
  assert.throws(() => c.openSealed(sealed, c.x25519KeyFromSignature(web.keys.owner.signature)), { code: "open_failed" });
});

test("hex and base64 parsing refuse junk", () => {
  assert.throws(() => c.fromHex("0xabc"), { code: "malformed" });
  assert.throws(() => c.fromHex("abcd"), { code: "malformed" });
  assert.throws(() => c.base64Decode("AAA"), { code: "malformed" });
  assert.throws(() => c.base64Decode("AA-_"), { code: "malformed" });
  assert.deepEqual([...c.base64Decode("AAE=")], [0, 1]);
});
