// keys.js's fetchDataKey against a fake fetch replaying the vector gateways' answers
// (tests/vectors/web.json "release"): the DEK from any t good answers; a corrupted share
// named and never used; refusals, garbage, oversized answers and timeouts named per
// gateway; fewer than t good shares a KeyFetchError; shares of two epochs never combined.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Wallet } from "ethers";
import { fromHex, toHex, x25519KeyFromSignature } from "../../../marketplace/web/static/js/crypto.js";
import { KeyFetchError, fetchDataKey } from "../../../marketplace/web/static/js/keys.js";
import { web } from "./support.mjs";

const release = web.release;
const buyerKey = x25519KeyFromSignature(web.keys.buyer.signature);
const wallet = new Wallet(web.keys.buyer.walletKey);
const answers = Object.fromEntries(release.answers.map((a) => [a.node, a]));
const url = (i) => release.config.gateways[i - 1].url;

function committee(epoch) {
  const c = release.committees[String(epoch)];
  if (!c) throw new Error(`epoch ${epoch} is not finalized`);
  return { threshold: c.threshold, shareKeys: new Map(c.shareKeys.map((k, i) => [i + 1, fromHex(k)])) };
}

const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

/** A fetch whose gateway i answers `behaviour[i]`: an answer object (200), a Response,
 * "down" (network error), "hang" (never answers until aborted) or a function. */
function fakeFetch(behaviour, seen = []) {
  return async (target, init) => {
    const node = release.config.gateways.find((g) => target === `${g.url}/v1/keys`).index;
    seen.push({ node, init });
    const b = behaviour[node];
    if (b === "down") throw new TypeError("fetch failed");
    if (b === "hang") {
      return new Promise((_, reject) => init.signal.addEventListener("abort", () => {
        reject(new DOMException("aborted", "AbortError"));
      }));
    }
    if (typeof b === "function") return b(init);
    if (b instanceof Response) return b;
    return json(200, b);
  };
}

async function signTypedData(td) {
  const types = { ...td.types };
  delete types.EIP712Domain;
  return wallet.signTypedData(td.domain, types, td.message);
}

function run(behaviour, extra = {}) {
  const events = [];
  const seen = [];
  const promise = fetchDataKey({
    config: release.config,
    debitId: release.debitId,
    version: release.version,
    listingId: release.listingId,
    cidBytes: fromHex(release.cidBytes),
    capsule: fromHex(release.capsule),
    buyerKey,
    signTypedData,
    committeeAt: async (epoch) => committee(epoch),
    onEvent: (e) => events.push(e),
    fetch: fakeFetch(behaviour, seen),
    timeoutMs: 200,
    ...extra,
  });
  return { promise, events, seen };
}

test("all three gateways answer: the DEK; each request signed, fresh nonce, valid body", async () => {
  const { promise, events, seen } = run({ 1: answers[1], 2: answers[2], 3: answers[3] });
  assert.equal(toHex(await promise), release.dek);
  assert.ok(events.filter((e) => e.status === "ok").length >= 2);
  const nonces = new Set();
  for (const { init } of seen) {
    assert.equal(init.method, "POST");
    const body = JSON.parse(init.body);
    assert.deepEqual(Object.keys(body).sort(), ["request", "signature"]);
    assert.deepEqual(Object.keys(body.request).sort(), ["debitId", "expiry", "nonce", "version"]);
    assert.equal(body.request.debitId, release.debitId);
    assert.equal(body.request.version, release.version);
    assert.ok(Math.abs(body.request.expiry - (Math.floor(Date.now() / 1000) + 300)) <= 5);
    nonces.add(body.request.nonce);
    assert.match(body.signature, /^0x[0-9a-f]{130}$/);
  }
  assert.equal(nonces.size, seen.length);
});

test("one gateway down: the other two suffice, and the down one is reported", async () => {
  const { promise, events } = run({ 1: "down", 2: answers[2], 3: answers[3] });
  assert.equal(toHex(await promise), release.dek);
  assert.deepEqual(events.filter((e) => e.status === "error").map((e) => e.node), [1]);
  assert.match(events.find((e) => e.node === 1).message, /gateway 1 \(http:\/\/gateway-1\.test:8001\): unreachable/);
});

test("a corrupted share is named as gateway 2's and never used: the DEK from 1 and 3", async () => {
  const { promise, events } = run({ 1: answers[1], 2: release.corruptedAnswer, 3: answers[3] });
  assert.equal(toHex(await promise), release.dek);
  const bad = events.filter((e) => e.status === "bad_share");
  assert.equal(bad.length, 1);
  assert.equal(bad[0].node, 2);
  assert.match(bad[0].message, /gateway 2 .*node 2's share fails its proof/);
});

test("a corrupted share and a gateway down: fewer than t, KeyFetchError names both", async () => {
  const { promise } = run({ 1: answers[1], 2: release.corruptedAnswer, 3: "down" });
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof KeyFetchError);
    assert.equal(e.have, 1);
    assert.equal(e.need, 2);
    assert.deepEqual([...e.faults.keys()].sort(), [2, 3]);
    assert.match(e.message, /got 1 valid key share, 2 needed/);
    assert.match(e.message, /gateway 2 \(http:\/\/gateway-2\.test:8002\): bad share: node 2's share fails its proof/);
    assert.match(e.message, /gateway 3 \(http:\/\/gateway-3\.test:8003\): unreachable/);
    return true;
  });
});

test("two gateways down: a clear KeyFetchError naming each", async () => {
  const { promise } = run({ 1: "down", 2: answers[2], 3: "down" });
  await assert.rejects(promise, (e) => e instanceof KeyFetchError && e.have === 1
    && /gateway 1 \(.*\): unreachable.*; gateway 3 \(.*\): unreachable/.test(e.message));
});

test("403, 503, garbage, an HTML page, oversized answers and a hang are each named", async () => {
  const behaviour = {
    1: json(403, { code: "not_entitled", message: "isEntitled is false" }),
    2: new Response("<html>oops</html>", { status: 502 }),
    3: "hang",
  };
  const { promise, events } = run(behaviour);
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof KeyFetchError);
    assert.equal(e.have, 0);
    assert.match(e.faults.get(1), /refused with not_entitled \(HTTP 403\): isEntitled is false/);
    assert.match(e.faults.get(2), /HTTP 502, not JSON/);
    assert.match(e.faults.get(3), /timed out/);
    return true;
  });
  assert.deepEqual(events.map((e) => e.status), ["error", "error", "error"]);
  const more = run({
    1: new Response("x".repeat(70 * 1024), { status: 200 }),
    2: json(200, [1, 2]),
    3: json(200, { ...answers[3], sealedShare: "not base64!" }),
  });
  await assert.rejects(more.promise, (e) => /larger than 65536 bytes/.test(e.faults.get(1))
    && /not a JSON object/.test(e.faults.get(2)) && /no valid sealedShare/.test(e.faults.get(3)));
});

test("an answer whose receipt does not match its share, debit or buyer key is refused", async () => {
  const wrongNode = { ...answers[1], receipt: { ...answers[1].receipt, node: 2 } };
  const wrongDebit = { ...answers[2], receipt: { ...answers[2].receipt, debitId: release.debitId + 1 } };
  const noReceipt = { ...answers[3], receipt: undefined };
  const { promise } = run({ 1: wrongNode, 2: wrongDebit, 3: noReceipt });
  await assert.rejects(promise, (e) => /node 1's share, its receipt names node 2/.test(e.faults.get(1))
    && /another debit or version/.test(e.faults.get(2)) && /no receipt/.test(e.faults.get(3)));
  const otherKey = { ...answers[1], receipt: { ...answers[1].receipt, buyerKeyHash: `0x${"00".repeat(32)}` } };
  const otherShare = { ...answers[2], sealedShare: answers[3].sealedShare };
  const second = run({ 1: otherKey, 2: otherShare, 3: "down" });
  await assert.rejects(second.promise, (e) => /does not describe this share/.test(e.faults.get(1))
    && /does not describe this share/.test(e.faults.get(2)));
});

test("a gateway answering with another node's share is refused (a relay cannot count twice)", async () => {
  const { promise, events } = run({ 1: answers[1], 2: answers[1], 3: answers[3] });
  assert.equal(toHex(await promise), release.dek);
  assert.match(events.find((e) => e.node === 2).message, /answered with node 1's share/);
});

test("mixed epochs: one share of epoch 1 and one of epoch 2 are never combined", async () => {
  const { promise } = run({ 1: answers[1], 2: "down", 3: release.epoch2Answer });
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof KeyFetchError);
    assert.deepEqual([...e.byEpoch.entries()].sort(), [[1, [1, 2]], [2, [1, 2]]]);
    assert.match(e.message, /per committee epoch: epoch 1 1 of 2, epoch 2 1 of 2/);
    return true;
  });
});

test("an epoch-2 share verifies against epoch 2's keys (config.epoch 1 lets indices differ)", async () => {
  // node 3's epoch-2 share is valid in its epoch, but alone it cannot reach t there
  const { promise, events } = run({ 1: answers[1], 2: answers[2], 3: release.epoch2Answer },
    { config: { ...release.config, epoch: 1 } });
  assert.equal(toHex(await promise), release.dek);
  for (const e of events) assert.notEqual(e.status, "bad_share", e.message);
});

test("a share for an epoch the chain has not finalized is a bad share of that gateway", async () => {
  const { promise } = run({ 1: answers[1], 2: release.corruptedAnswer, 3: release.epoch2Answer },
    { committeeAt: async (epoch) => { if (epoch !== 1) throw new Error("not finalized"); return committee(1); } });
  await assert.rejects(promise, (e) => /committee epoch 2, not a finalized epoch/.test(e.faults.get(3)));
});

test("a capsule not bound to this listing is refused before any gateway is asked", async () => {
  const { promise, seen } = run({ 1: answers[1], 2: answers[2], 3: answers[3] },
    { listingId: release.listingId + 1 });
  await assert.rejects(promise, { code: "capsule_not_bound" });
  assert.equal(seen.length, 0);
  const cap = fromHex(release.capsule);
  cap[60] ^= 1;
  await assert.rejects(run({}, { capsule: cap }).promise, { code: "capsule_not_bound" });
});

test("a wallet that refuses to sign ends the fetch with a clear error", async () => {
  const { promise } = run({ 1: answers[1] }, { signTypedData: async () => { throw new Error("User rejected"); } });
  await assert.rejects(promise, (e) => e instanceof KeyFetchError && e.code === "wallet_refused"
    && /User rejected/.test(e.message));
});

test("once t shares are in, no further request is sent", async () => {
  // the wallet is still showing the third request when the second share arrives
  let okCount = 0;
  let twoIn;
  const twoShares = new Promise((resolve) => { twoIn = resolve; });
  let calls = 0;
  const { promise, seen } = run({ 1: answers[1], 2: answers[2], 3: answers[3] }, {
    onEvent: (e) => { if (e.status === "ok" && ++okCount === 2) twoIn(); },
    signTypedData: async (td) => {
      calls += 1;
      if (calls === 3) await twoShares;
      return signTypedData(td);
    },
  });
  assert.equal(toHex(await promise), release.dek);
  assert.deepEqual(seen.map((s) => s.node), [1, 2]);
});
