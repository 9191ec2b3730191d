// The buyer's key fetch in the browser, with marketplace/keyclient.py's rules
// (docs/protocol.md §6-§8, §11): a fresh wallet-signed KeyRequest per gateway, all gateways
// asked in parallel, every share opened with the buyer's X25519 key and its DLEQ proof
// checked against the share key of its receipt's committee epoch (read on-chain by the
// caller), shares combined only within one epoch, a bad share blamed on its gateway and
// never used, and fewer than t good shares a KeyFetchError naming every gateway and why.
import {
  CryptoError, canonicalSignature, encodeContext, fromHex, openSealedShare, parseCapsule,
  randomBytes, recoverDataKey, sha256, toHex, verifyCapsule, verifyShare, base64Decode,
  isValidPoint,
} from "./crypto.js";
import { eip712Domain, keyRequestBody, keyRequestTypedData } from "./typed.js";

/** Seconds a KeyRequest stays valid (gateways accept at most 600). */
export const REQUEST_LIFETIME = 300;
/** Milliseconds one gateway has to answer, from the moment its request is sent. */
export const ANSWER_TIMEOUT_MS = 15000;
/** A real answer is under 1 KiB; a gateway cannot make the page read more than this. */
export const MAX_ANSWER_SIZE = 64 * 1024;

/** Fewer than t valid shares of any one committee epoch (or no usable gateway, or the
 * wallet refused to sign). `faults` maps a gateway index to what went wrong with it;
 * `byEpoch` maps an epoch to [valid shares, threshold]. */
export class KeyFetchError extends Error {
  constructor(message, { code = "not_enough_shares", have = 0, need = 0, faults = new Map(),
    byEpoch = new Map() } = {}) {
    super(message);
    this.name = "KeyFetchError";
    this.code = code;
    this.have = have;
    this.need = need;
    this.faults = faults;
    this.byEpoch = byEpoch;
  }
}

/** A gateway's answer that cannot be used: refused, unreachable, too slow, unusable. */
class AnswerError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // "error" (transport, refusal) or "bad_share" (content)
  }
}

const shown = (text, limit = 120) => {
  const s = String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
  return s.length > limit ? `${s.slice(0, limit)}…` : s;
};

async function readCapped(response) {
  if (!response.body || typeof response.body.getReader !== "function") {
    const text = await response.text();
    if (text.length > MAX_ANSWER_SIZE) throw new AnswerError("error", "answer is too large");
    return text;
  }
  const reader = response.body.getReader();
  const parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_ANSWER_SIZE) {
      await reader.cancel();
      throw new AnswerError("error", `answer is larger than ${MAX_ANSWER_SIZE} bytes`);
    }
    parts.push(value);
  }
  const all = new Uint8Array(size);
  let pos = 0;
  for (const p of parts) {
    all.set(p, pos);
    pos += p.length;
  }
  return new TextDecoder("utf-8", { fatal: false }).decode(all);
}

async function postKeys(fetchImpl, url, body, signal, timeoutMs) {
  let response;
  try {
    response = await fetchImpl(`${url.replace(/\/+$/, "")}/v1/keys`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    if (signal.aborted) throw new AnswerError("error", `timed out (no answer within ${timeoutMs / 1000} s)`);
    throw new AnswerError("error", `unreachable (${shown(e && e.name ? e.name : e, 40)})`);
  }
  let text;
  try {
    text = await readCapped(response);
  } catch (e) {
    if (e instanceof AnswerError) throw e;
    if (signal.aborted) throw new AnswerError("error", `timed out while reading the answer`);
    throw new AnswerError("error", "the answer broke off");
  }
  let payload;
  try {
    payload = JSON.parse(text);
  } catch {
    throw new AnswerError("error", `HTTP ${response.status}, not JSON`);
  }
  if (response.status !== 200) {
    const ok = payload && typeof payload === "object";
    const code = ok && typeof payload.code === "string" ? shown(payload.code, 40) : "?";
    const message = ok && typeof payload.message === "string" ? `: ${shown(payload.message)}` : "";
    throw new AnswerError("error", `refused with ${code} (HTTP ${response.status})${message}`);
  }
  if (!payload || typeof payload !== "object" || Array.isArray(payload)) {
    throw new AnswerError("bad_share", "the answer is not a JSON object");
  }
  return payload;
}

function isIndex(value, max) {
  return Number.isSafeInteger(value) && value >= 1 && value <= max;
}

/**
 * The version's data key (32 bytes), from t verified shares of one committee epoch.
 *
 * config: the /api/config answer ({chainId, market, gateways: [{index, url}]}, optionally
 * `epoch`, the epoch of the gateways' indices: in it a gateway must answer with its own
 * index's share; without it every gateway must). committeeAt(epoch) → {threshold,
 * shareKeys: Map<index, Uint8Array>} read on-chain (throw for an epoch that is not
 * finalized). Optional for tests: fetch, now (ms), timeoutMs.
 * Throws CryptoError for a capsule not bound to (chain, market, listing, version, CID),
 * KeyFetchError with fewer than t good shares, CryptoError "capsule_open_failed" if the
 * combined key does not open the capsule.
 */
export async function fetchDataKey({
  config, debitId, version, listingId, cidBytes, capsule, buyerKey, signTypedData,
  committeeAt, onEvent = () => {}, fetch: fetchImpl = globalThis.fetch.bind(globalThis),
  now = Date.now, timeoutMs = ANSWER_TIMEOUT_MS,
}) {
  const parsed = parseCapsule(capsule);
  const ctx = encodeContext({ chainId: config.chainId, market: config.market, listingId, version, cidBytes });
  verifyCapsule(parsed, ctx);
  const domain = eip712Domain(config);
  const gateways = [...(config.gateways || [])].sort((a, b) => a.index - b.index);
  if (gateways.length === 0) {
    throw new KeyFetchError("no gateway is configured", { code: "no_gateways" });
  }
  const buyerKeyHash = toHex(sha256(buyerKey.publicKey));
  const committees = new Map(); // epoch -> Promise<committee>
  const epochs = new Map(); // epoch -> {committee, shares: Map<shareIndex, {gateway, share}>}
  const faults = new Map();
  const controllers = new Set();
  let finished = null;
  const done = new Promise((resolve) => { finished = resolve; });
  const complete = () => [...epochs.values()].some((g) => g.shares.size >= g.committee.threshold);
  const name = (g) => `gateway ${g.index} (${g.url})`;
  const event = (g, status, message) => {
    try {
      onEvent({ node: g.index, url: g.url, status, message });
    } catch { /* a display callback must not break the fetch */ }
  };

  const committeeFor = (epoch) => {
    if (!committees.has(epoch)) {
      committees.set(epoch, (async () => {
        const c = await committeeAt(epoch);
        if (!c || !Number.isSafeInteger(c.threshold) || c.threshold < 1 || !(c.shareKeys instanceof Map)) {
          throw new Error("the chain gave no usable committee");
        }
        return c;
      })());
    }
    return committees.get(epoch);
  };

  async function verified(gateway, answer) {
    const { receipt } = answer;
    if (!receipt || typeof receipt !== "object") throw new AnswerError("bad_share", "the answer has no receipt");
    if (!isIndex(receipt.epoch, Number.MAX_SAFE_INTEGER)) {
      throw new AnswerError("bad_share", "the receipt's epoch is not an epoch number");
    }
    if (!isIndex(receipt.node, 255)) throw new AnswerError("bad_share", "the receipt's node is not a node index");
    if (String(receipt.debitId) !== String(debitId) || receipt.version !== Number(version)) {
      throw new AnswerError("bad_share", "the receipt is for another debit or version");
    }
    let sealed;
    try {
      sealed = base64Decode(answer.sealedShare, "sealedShare");
    } catch {
      throw new AnswerError("bad_share", "the answer has no valid sealedShare");
    }
    if (String(receipt.buyerKeyHash).toLowerCase() !== buyerKeyHash
        || String(receipt.sealedShareHash).toLowerCase() !== toHex(sha256(sealed))) {
      throw new AnswerError("bad_share", "the receipt does not describe this share sealed to this buyer key");
    }
    let committee;
    try {
      committee = await committeeFor(receipt.epoch);
    } catch (e) {
      throw new AnswerError("bad_share", `answered for committee epoch ${receipt.epoch}, `
        + `not a finalized epoch (${shown(e && e.message ? e.message : e, 80)})`);
    }
    const share = openSealedShare(sealed, buyerKey, debitId, version);
    if (share.index !== receipt.node) {
      throw new AnswerError("bad_share", `answered with node ${share.index}'s share, its receipt names node ${receipt.node}`);
    }
    const ownEpoch = config.epoch === undefined || config.epoch === receipt.epoch;
    if (ownEpoch && share.index !== gateway.index) {
      throw new AnswerError("bad_share", `answered with node ${share.index}'s share`);
    }
    const shareKey = committee.shareKeys.get(share.index);
    if (!(shareKey instanceof Uint8Array) || !isValidPoint(shareKey)) {
      throw new AnswerError("bad_share", `node ${share.index} has no valid share key in epoch ${receipt.epoch}`);
    }
    verifyShare(share, shareKey, parsed.r);
    return { epoch: receipt.epoch, committee, share };
  }

  async function ask(gateway, body) {
    const controller = new AbortController();
    controllers.add(controller);
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const answer = await postKeys(fetchImpl, gateway.url, body, controller.signal, timeoutMs);
      const { epoch, committee, share } = await verified(gateway, answer);
      if (!epochs.has(epoch)) epochs.set(epoch, { committee, shares: new Map() });
      const group = epochs.get(epoch);
      if (group.shares.has(share.index)) {
        const other = group.shares.get(share.index).gateway;
        throw new AnswerError("bad_share", `answered with epoch ${epoch} node ${share.index}'s share, which gateway ${other.index} already gave`);
      }
      group.shares.set(share.index, { gateway, share });
      event(gateway, "ok", `${name(gateway)}: valid key share (epoch ${epoch})`);
      if (complete()) finished();
    } catch (e) {
      let status = "bad_share";
      let why;
      if (e instanceof AnswerError) {
        status = e.status;
        why = e.message;
      } else if (e instanceof CryptoError) {
        why = `bad share: ${e.message}`;
      } else {
        status = "error";
        why = `failed (${shown(e && e.name ? e.name : e, 40)})`;
      }
      if (!controller.signal.aborted || !complete()) {
        faults.set(gateway.index, why);
        event(gateway, status, `${name(gateway)}: ${why}`);
      }
    } finally {
      clearTimeout(timer);
      controllers.delete(controller);
    }
  }

  const asks = [];
  try {
    for (const gateway of gateways) {
      if (complete()) break; // t shares already: no need to ask (or sign) again
      const request = {
        debitId,
        version,
        expiry: Math.floor(now() / 1000) + REQUEST_LIFETIME,
        nonce: randomBytes(32),
      };
      let signature;
      try {
        signature = toHex(canonicalSignature(fromHex(
          await signTypedData(keyRequestTypedData(domain, request)), "signature")));
      } catch (e) {
        throw new KeyFetchError(`the wallet did not sign the key request: ${shown(e && e.message ? e.message : e)}`,
          { code: "wallet_refused", faults });
      }
      if (complete()) break; // the shares came in while the wallet was asking
      asks.push(ask(gateway, keyRequestBody(request, signature)));
    }
    await Promise.race([done, Promise.all(asks)]);
  } finally {
    for (const controller of controllers) controller.abort(); // slower gateways: not needed
  }

  const ready = [...epochs.entries()].filter(([, g]) => g.shares.size >= g.committee.threshold)
    .sort(([a], [b]) => a - b);
  if (ready.length === 0) throw failure(epochs, faults, gateways, name);
  const group = ready[ready.length - 1][1];
  const shares = [...group.shares.values()].map((s) => s.share);
  return recoverDataKey(parsed, ctx, shares, group.committee.threshold);
}

function failure(epochs, faults, gateways, name) {
  const byEpoch = new Map([...epochs].map(([e, g]) => [e, [g.shares.size, g.committee.threshold]]));
  let have = 0;
  let need = 0;
  let closest = null; // the epoch that came closest to its threshold, the newest among equals
  for (const [epoch, [got, t]] of byEpoch) {
    const gap = got - t;
    if (closest === null || gap > closest.gap || (gap === closest.gap && epoch > closest.epoch)) {
      closest = { epoch, gap };
      have = got;
      need = t;
    }
  }
  const detail = gateways.filter((g) => faults.has(g.index))
    .map((g) => `${name(g)}: ${faults.get(g.index)}`).join("; ");
  const perEpoch = byEpoch.size > 1
    ? `per committee epoch: ${[...byEpoch].sort(([a], [b]) => a - b)
      .map(([e, [got, t]]) => `epoch ${e} ${got} of ${t}`).join(", ")}; `
    : "";
  const needText = need ? `, ${need} needed` : "";
  return new KeyFetchError(
    `got ${have} valid key share${have === 1 ? "" : "s"}${needText} (${perEpoch}${detail || "no answers"})`,
    { have, need, faults, byEpoch });
}
