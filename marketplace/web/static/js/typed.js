// The EIP-712 typed data a wallet signs with eth_signTypedData_v4 (docs/protocol.md §2.5),
// identical to marketplace/eip712.typed_data: message integers as decimal strings,
// domain.chainId a number.
import { BUYER_KEY_PURPOSE, OWNER_KEY_PURPOSE, toHex } from "./crypto.js";

const DOMAIN_TYPE = [
  { name: "name", type: "string" },
  { name: "version", type: "string" },
  { name: "chainId", type: "uint256" },
  { name: "verifyingContract", type: "address" },
];

const TYPES = {
  EncryptionKey: [{ name: "purpose", type: "string" }],
  KeyRequest: [
    { name: "debitId", type: "uint256" },
    { name: "version", type: "uint32" },
    { name: "expiry", type: "uint64" },
    { name: "nonce", type: "bytes32" },
  ],
};

const LIMITS = { debitId: 2n ** 256n, version: 2n ** 32n, expiry: 2n ** 64n };

function checkedUint(name, value) {
  const n = typeof value === "bigint" ? value : Number.isSafeInteger(value) ? BigInt(value) : null;
  if (n === null || n < 0n || n >= LIMITS[name]) {
    throw new RangeError(`${name} must be an integer in its Solidity type's range`);
  }
  return n;
}

/** {name "DataDebit", version "1", chainId, verifyingContract}, from the /api/config
 * answer ({chainId, market}) or a domain object ({chainId, verifyingContract}). */
export function eip712Domain({ chainId, market, verifyingContract }) {
  if (market === undefined) market = verifyingContract;
  if (!Number.isSafeInteger(chainId) || chainId < 0) throw new RangeError("chainId must be an integer");
  if (typeof market !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(market)) {
    throw new RangeError("market must be a 20-byte 0x address");
  }
  return { name: "DataDebit", version: "1", chainId, verifyingContract: market };
}

function typedData(domain, primaryType, message) {
  return {
    types: { EIP712Domain: DOMAIN_TYPE.map((f) => ({ ...f })), [primaryType]: TYPES[primaryType].map((f) => ({ ...f })) },
    primaryType,
    domain: { ...domain },
    message,
  };
}

/** EncryptionKey for the buyer key (§8): `role` "buyer" (default) or "owner" (§17.4). */
export function encryptionKeyTypedData(domain, role = "buyer") {
  const purpose = { buyer: BUYER_KEY_PURPOSE, owner: OWNER_KEY_PURPOSE }[role];
  if (purpose === undefined) throw new RangeError('role must be "buyer" or "owner"');
  return typedData(domain, "EncryptionKey", { purpose });
}

/** KeyRequest(debitId, version, expiry, nonce) with integers as decimal strings. */
export function keyRequestTypedData(domain, { debitId, version, expiry, nonce }) {
  if (!(nonce instanceof Uint8Array) || nonce.length !== 32) throw new RangeError("nonce must be 32 bytes");
  return typedData(domain, "KeyRequest", {
    debitId: checkedUint("debitId", debitId).toString(),
    version: checkedUint("version", version).toString(),
    expiry: checkedUint("expiry", expiry).toString(),
    nonce: toHex(nonce),
  });
}

/** The `POST /v1/keys` body text (§11.2): integers as JSON integers, written exactly even
 * above 2^53 (built as text, since JSON.stringify would go through a float). */
export function keyRequestBody({ debitId, version, expiry, nonce }, signature) {
  if (typeof signature !== "string" || !/^0x[0-9a-fA-F]{130}$/.test(signature)) {
    throw new RangeError("the signature must be 0x followed by 130 hex digits");
  }
  return `{"request":{"debitId":${checkedUint("debitId", debitId)},`
    + `"version":${checkedUint("version", version)},"expiry":${checkedUint("expiry", expiry)},`
    + `"nonce":"${toHex(nonce)}"},"signature":"${signature.toLowerCase()}"}`;
}
