// The listing page's request flow (docs/protocol.md §14, §17): the purpose form becomes a
// purpose document (sealed to the listing's owner key when the listing names one, as the
// Python buyer does), the server stores its bytes (POST /api/documents), and the wallet
// sends requestDebit(listingId, periods, buyerKey, purposeHash, consentDeadline) paying
// exactly price x periods: ether as the value, an ERC-20 by approving exactly the total
// first. The purposeHash on chain is the one computed here, not the server's.
import { Contract, ZeroAddress, getAddress } from "ethers";
import { buyerKeyFromSignature, bytesEqual, fromHex, toHex } from "./crypto.js";
import { CidBuilder } from "./cid.js";
import { buildPurposeDocument, encodePurposeDocument, parseJsonObject, purposeHash, sealPurpose } from "./documents.js";
import { say } from "./messages.js";
import { eip712Domain, encryptionKeyTypedData } from "./typed.js";
import * as wallet from "./wallet.js";

const ERC20_ABI = [
  "function allowance(address owner, address spender) view returns (uint256)",
  "function approve(address spender, uint256 value) returns (bool)",
  "function balanceOf(address account) view returns (uint256)",
];
const DURATION = /^([0-9]{1,9})\s*([smhd]?)$/;
const UNIT_SECONDS = { "": 1, s: 1, m: 60, h: 3600, d: 86400 };
const MAX_PERIODS = 2n ** 32n - 1n;

/** Seconds from "90", "90s", "15m", "2h" or "7d" (as marketplace.app.units.parse_duration);
 * null for an empty text. */
export function parseDuration(text) {
  const trimmed = String(text).trim().toLowerCase();
  if (trimmed === "") return null;
  const match = DURATION.exec(trimmed);
  if (!match || Number(match[1]) === 0) {
    throw new RangeError(`"${trimmed.slice(0, 20)}" is not a duration: give 90s, 15m, 2h or 7d`);
  }
  return Number(match[1]) * UNIT_SECONDS[match[2]];
}

/** A whole number of periods, 1 to 2^32 - 1 (the contract's uint32). */
export function parsePeriods(text) {
  const trimmed = String(text).trim();
  if (!/^[0-9]{1,10}$/.test(trimmed) || BigInt(trimmed) < 1n || BigInt(trimmed) > MAX_PERIODS) {
    throw new RangeError("periods must be a whole number from 1");
  }
  return BigInt(trimmed);
}

/** The bytes to store for the form's purpose: sealed to `ownerKey` (0x hex) when given. */
export function purposeBytes(fields, ownerKey) {
  const doc = buildPurposeDocument(fields);
  return ownerKey ? sealPurpose(doc, ownerKey) : encodePurposeDocument(doc);
}

/** The owner key of listing `listingId` as the chain names it: the listing document whose
 * CID its ListingCreated event holds, read through the wallet's provider (not from this
 * web server), fetched from /content and checked against that CID here. A server that
 * rendered another key (to read the purpose it asks the buyer to seal) is caught. */
export async function ownerKeyFromChain(market, listingId, createdBlock, fetchFn = fetch) {
  const block = Number.isSafeInteger(createdBlock) && createdBlock >= 0 ? createdBlock : 0;
  const [event] = await market.queryFilter(market.filters.ListingCreated(listingId), block, block || "latest");
  if (!event) throw new Error(`listing ${listingId} has no ListingCreated event at block ${block}; nothing was sent`);
  const uri = String(event.args.metadataURI);
  if (!uri.startsWith("ipfs://")) throw new Error("the listing names no document to read its owner key from; nothing was sent");
  const cid = uri.slice("ipfs://".length);
  const response = await fetchFn(`/content/${encodeURIComponent(cid)}`);
  if (!response.ok) throw new Error(`the listing document ${cid} could not be read (HTTP ${response.status}); nothing was sent`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const builder = new CidBuilder();
  builder.update(bytes);
  if (builder.finish() !== cid) throw new Error("the listing document served is not the one on chain (CID mismatch); nothing was sent");
  const key = parseJsonObject(bytes).ownerKey;
  return typeof key === "string" && key ? key.toLowerCase() : null;
}

async function storeDocument(bytes) {
  let response;
  try {
    response = await fetch("/api/documents", {
      method: "POST", body: bytes, headers: { "Content-Type": "application/octet-stream", Accept: "application/json" },
    });
  } catch {
    throw new Error("the web server did not answer while storing the purpose");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok || body === null) {
    throw new Error(`the purpose was refused${body && body.message ? `: ${body.message}` : ""}`);
  }
  return body;
}

async function payTokens(signer, asset, marketAddress, total) {
  const token = new Contract(asset, ERC20_ABI, signer);
  const me = await signer.getAddress();
  const held = await token.balanceOf(me);
  if (held < total) throw new Error(`the wallet holds ${held} base units of the token, the request costs ${total}; nothing was sent`);
  const current = await token.allowance(me, marketAddress);
  if (current !== total) {
    // USDT-style tokens refuse to change a non-zero allowance: go through zero
    if (current !== 0n) await (await token.approve(marketAddress, 0n)).wait();
    say("Approve exactly the total in your wallet…", "info");
    await (await token.approve(marketAddress, total)).wait();
  }
}

function debitIdFrom(receipt, market, marketAddress) {
  for (const log of receipt.logs) {
    if (getAddress(log.address) !== marketAddress) continue; // only the market's own events
    const parsed = market.interface.parseLog(log);
    if (parsed && parsed.name === "DebitRequested") return parsed.args.debitId;
  }
  throw new Error("the transaction was mined but emitted no DebitRequested event");
}

function showResult(form, debitId, buyer) {
  const area = document.getElementById("request-result-area") || form.parentElement;
  const result = document.createElement("p");
  result.id = "request-result";
  result.className = "message success";
  result.dataset.debitId = String(debitId);
  result.append(`Requested: debit #${debitId}. `);
  const link = document.createElement("a");
  link.href = `/buyer/${buyer}`;
  link.textContent = "See your debits";
  result.append(link);
  document.getElementById("request-result")?.remove();
  area.append(result);
  link.focus();
}

async function request(form) {
  if (form.dataset.documentOk !== "true") {
    throw new Error("this listing's document cannot be verified, so the purpose cannot be sealed to its owner; nothing was sent");
  }
  const data = new FormData(form);
  const periods = parsePeriods(data.get("periods") ?? "1");
  const consentWithin = parseDuration(data.get("consentWithin") ?? "");
  const fields = {
    requester: String(data.get("requester") ?? "").trim(),
    purpose: String(data.get("purpose") ?? ""),
    intendedUse: String(data.get("intendedUse") ?? ""),
    retention: String(data.get("retention") ?? "").trim(),
    contact: String(data.get("contact") ?? "").trim(),
  };
  const buyer = await wallet.connect();
  const cfg = await wallet.checkChain();
  const listingId = BigInt(form.dataset.listingId);
  const market = await wallet.market();
  const ownerKey = await ownerKeyFromChain(market, listingId, Number(form.dataset.createdBlock));
  if ((form.dataset.ownerKey || "").toLowerCase() !== (ownerKey ?? "")) {
    throw new Error("the owner key this page shows is not the one in the listing's document on chain; nothing was sent");
  }
  const bytes = purposeBytes(fields, ownerKey);
  const hash = purposeHash(bytes);
  const marketAddress = getAddress(cfg.market);
  // the price and asset as the chain has them now, not as the page was rendered
  const listing = await market.getListing(listingId);
  const [price, isOpen, asset] = [listing.pricePerPeriod, listing.open, getAddress(listing.asset)];
  if (!isOpen) throw new Error("this listing is closed; nothing was sent");
  const total = price * periods;

  say("Storing your purpose document…", "info");
  const stored = await storeDocument(bytes);
  if (!bytesEqual(fromHex(stored.purposeHash, "purposeHash"), hash)) {
    throw new Error("the server stored a different document than the one written here; nothing was sent");
  }
  say("Sign the encryption-key message in your wallet (it derives the key your data will be sealed to)…", "info");
  const signature = await wallet.signTypedData(encryptionKeyTypedData(eip712Domain(cfg), "buyer"));
  const buyerKey = buyerKeyFromSignature(signature).publicKey;
  let deadline = 0n;
  if (consentWithin !== null && form.dataset.autoApprove !== "true") {
    const block = await market.runner.provider.getBlock("latest");
    deadline = BigInt(block.timestamp) + BigInt(consentWithin);
  }
  let value = 0n;
  if (asset === ZeroAddress) value = total;
  else await payTokens(market.runner, asset, marketAddress, total);
  say("Confirm the request in your wallet…", "info");
  const tx = await market.requestDebit(listingId, periods, toHex(buyerKey), toHex(hash), deadline, { value });
  const receipt = await tx.wait();
  if (!receipt || receipt.status !== 1) throw new Error("the request transaction failed");
  return { debitId: debitIdFrom(receipt, market, marketAddress), buyer };
}

function wire() {
  const form = document.getElementById("request-form");
  if (!form) return;
  const submit = document.getElementById("request-submit");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    submit.disabled = true;
    try {
      const { debitId, buyer } = await request(form);
      say(`Debit #${debitId} requested.`, "success");
      showResult(form, debitId, buyer);
    } catch (e) {
      say(wallet.describeError(e), "error");
    } finally {
      submit.disabled = false;
    }
  });
}

if (typeof document !== "undefined") wire();
