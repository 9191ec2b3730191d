// Purpose documents in the browser (docs/protocol.md §17), as marketplace/documents.py:
// the canonical JSON (Python's json.dumps(sort_keys=True, separators=(",", ":"),
// ensure_ascii=False)), the purpose schema's rules, sealing a purpose to the listing
// owner's X25519 key and opening it with the owner key, purposeHash = SHA-256 of the bytes.
import { base64Decode, base64Encode, bytesEqual, fromHex, isSmallOrderX25519, openSealed,
  sealTo, sha256, SEAL_OVERHEAD, toHex, CryptoError } from "./crypto.js";
import { CODEC_RAW, cidFromDigest, cidToText } from "./cid.js";

export const PURPOSE_SCHEMA = "datadebit/purpose/v1";
export const SEALED_PURPOSE_SCHEMA = "datadebit/sealed-purpose/v1";
export const MAX_DOCUMENT_BYTES = 262144;
const MAX_DEPTH = 200;

/** A document that cannot be used; `reason` is a §17.5 code (invalid_json,
 * invalid_schema, too_large, cid_mismatch, sealed, invalid_owner_key); `errors` lists
 * `location: problem` lines for invalid_schema. */
export class DocumentError extends Error {
  constructor(reason, message, errors = []) {
    super(message);
    this.name = "DocumentError";
    this.reason = reason;
    this.errors = errors;
  }
}

// -- canonical JSON ---------------------------------------------------------------------

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Order of Python's str comparison: by code point (JS's default sort compares UTF-16
 * code units, which puts U+E000..U+FFFF after astral characters). */
export function compareCodePoints(a, b) {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const ca = a.codePointAt(i);
    const cb = b.codePointAt(j);
    if (ca !== cb) return ca - cb;
    i += ca > 0xffff ? 2 : 1;
    j += cb > 0xffff ? 2 : 1;
  }
  return (a.length - i) - (b.length - j);
}

function encodeString(text) {
  if (LONE_SURROGATE.test(text)) {
    throw new DocumentError("invalid_json", "a text holds a lone surrogate (not encodable as UTF-8)");
  }
  // JSON.stringify escapes exactly what Python's ensure_ascii=False dumps escapes for
  // well-formed strings: " \ and U+0000..U+001F (\b \f \n \r \t short, others \u00xx).
  return JSON.stringify(text);
}

/** Python's json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
 * allow_nan=False) for strings, safe integers, booleans, null, arrays and objects. */
export function canonicalJson(value, depth = 0) {
  if (depth > MAX_DEPTH) throw new DocumentError("invalid_json", "nested too deep");
  if (value === null) return "null";
  if (typeof value === "string") return encodeString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new DocumentError("invalid_json", "only integers are written (floats print differently in Python)");
    }
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v, depth + 1)).join(",")}]`;
  if (typeof value === "object") {
    const keys = Object.keys(value).sort(compareCodePoints);
    return `{${keys.map((k) => `${encodeString(k)}:${canonicalJson(value[k], depth + 1)}`).join(",")}}`;
  }
  throw new DocumentError("invalid_json", `a ${typeof value} is not JSON`);
}

export function canonicalBytes(value) {
  return new TextEncoder().encode(canonicalJson(value));
}

// -- strict parsing ---------------------------------------------------------------------

/** Duplicate keys and nesting deeper than MAX_DEPTH in already valid JSON text. */
function checkStructure(text) {
  const stack = []; // {keys: Set | null, expectKey}
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && top.keys && top.expectKey) {
        const key = JSON.parse(text.slice(i, end + 1));
        if (top.keys.has(key)) throw new DocumentError("invalid_json", "duplicate key in an object");
        top.keys.add(key);
        top.expectKey = false;
      }
      i = end;
    } else if (ch === "{" || ch === "[") {
      stack.push({ keys: ch === "{" ? new Set() : null, expectKey: ch === "{" });
      if (stack.length > MAX_DEPTH) throw new DocumentError("invalid_json", `nested deeper than ${MAX_DEPTH} levels`);
    } else if (ch === "}" || ch === "]") {
      stack.pop();
    } else if (ch === ",") {
      const top = stack[stack.length - 1];
      if (top && top.keys) top.expectKey = true;
    }
  }
}

/** One JSON object from UTF-8 bytes, refusing what marketplace/documents.py refuses. */
export function parseJsonObject(bytes) {
  if (bytes.length > MAX_DOCUMENT_BYTES) {
    throw new DocumentError("too_large", `document of ${bytes.length} bytes is over the ${MAX_DOCUMENT_BYTES}-byte limit`);
  }
  let text;
  let value;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    value = JSON.parse(text);
  } catch {
    throw new DocumentError("invalid_json", "the document is not valid UTF-8 JSON");
  }
  checkStructure(text);
  if (LONE_SURROGATE.test(JSON.stringify(value))) {
    throw new DocumentError("invalid_json", "the document holds a lone surrogate");
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new DocumentError("invalid_schema", "a document is a JSON object", ["document: a JSON object"]);
  }
  return value;
}

// -- the purpose schema (§17.2) ---------------------------------------------------------

const SINGLE_LINE_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f]/;
const MULTI_LINE_FORBIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
// Python's str.isspace() set, so "blank" means what it means to the Python reader
const PY_SPACE = /^[\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

const PURPOSE_FIELDS = {
  requester: { min: 1, max: 200, multi: false, required: true },
  purpose: { min: 1, max: 10000, multi: true, required: true },
  intendedUse: { min: 0, max: 2000, multi: true, required: false },
  retention: { min: 0, max: 200, multi: false, required: false },
  contact: { min: 0, max: 200, multi: false, required: false },
};

/** The purpose document with defaults filled in, or DocumentError "invalid_schema". */
export function validatePurposeDocument(value) {
  const errors = [];
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new DocumentError("invalid_schema", "a document is a JSON object", ["document: a JSON object"]);
  }
  if (value.schema !== PURPOSE_SCHEMA) {
    const found = value.schema === undefined ? "missing" : JSON.stringify(String(value.schema).slice(0, 40));
    throw new DocumentError("invalid_schema", `schema: ${found}, expected "${PURPOSE_SCHEMA}"`,
      [`schema: ${found}`]);
  }
  const doc = { schema: PURPOSE_SCHEMA };
  for (const key of Object.keys(value)) {
    if (key !== "schema" && !(key in PURPOSE_FIELDS)) errors.push(`${JSON.stringify(key.slice(0, 40))}: unknown key`);
  }
  for (const [key, rule] of Object.entries(PURPOSE_FIELDS)) {
    const text = value[key] === undefined ? (rule.required ? undefined : "") : value[key];
    if (text === undefined) {
      errors.push(`${key}: required`);
      continue;
    }
    if (typeof text !== "string") {
      errors.push(`${key}: must be a string`);
      continue;
    }
    const length = [...text].length;
    if (length < rule.min || length > rule.max) {
      errors.push(`${key}: ${rule.min}..${rule.max} characters, not ${length}`);
    } else if (LONE_SURROGATE.test(text)) {
      errors.push(`${key}: holds a lone surrogate`);
    } else if ((rule.multi ? MULTI_LINE_FORBIDDEN : SINGLE_LINE_FORBIDDEN).test(text)) {
      errors.push(rule.multi
        ? `${key}: control characters other than line feed and tab are not allowed`
        : `${key}: control characters and line breaks are not allowed here`);
    } else if (rule.required && PY_SPACE.test(text)) {
      errors.push(`${key}: must not be blank`);
    }
    doc[key] = text;
  }
  if (errors.length) {
    throw new DocumentError("invalid_schema", `the purpose document does not follow its schema: ${errors.slice(0, 5).join("; ")}`, errors);
  }
  return doc;
}

/** A purpose document from the request form's texts (empty optional texts allowed). */
export function buildPurposeDocument({ requester, purpose, intendedUse = "", retention = "", contact = "" }) {
  return validatePurposeDocument({ schema: PURPOSE_SCHEMA, requester, purpose, intendedUse, retention, contact });
}

/** The canonical bytes of a (validated) purpose document. */
export function encodePurposeDocument(doc) {
  const bytes = canonicalBytes(validatePurposeDocument(doc));
  if (bytes.length > MAX_DOCUMENT_BYTES) {
    throw new DocumentError("too_large", `document of ${bytes.length} bytes is over the ${MAX_DOCUMENT_BYTES}-byte limit`);
  }
  return bytes;
}

/** SHA-256 of the stored bytes: the debit's on-chain purposeHash. */
export function purposeHash(bytes) {
  return sha256(bytes);
}

/** The raw CIDv1 text where a purpose with this hash is stored. */
export function purposeCid(hash) {
  return cidToText(cidFromDigest(CODEC_RAW, hash));
}

function ownerKeyBytes(ownerKey) {
  let key = ownerKey;
  try {
    if (typeof ownerKey === "string") key = fromHex(ownerKey, "ownerKey");
  } catch {
    key = null;
  }
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    throw new DocumentError("invalid_owner_key", "invalid owner key: must be exactly 32 bytes");
  }
  if (isSmallOrderX25519(key)) {
    throw new DocumentError("invalid_owner_key", "invalid owner key: a small-order X25519 point");
  }
  return key;
}

/** The sealed-purpose wrapper bytes (§17.3): only the owner key's holder opens it. */
export function sealPurpose(doc, ownerKey) {
  const sealed = sealTo(ownerKeyBytes(ownerKey), encodePurposeDocument(doc));
  return canonicalBytes({ schema: SEALED_PURPOSE_SCHEMA, sealed: base64Encode(sealed) });
}

function sealedBytes(value) {
  const extra = Object.keys(value).filter((k) => k !== "schema" && k !== "sealed");
  if (extra.length) {
    throw new DocumentError("invalid_schema", "the sealed purpose has unknown keys", extra.map((k) => `${JSON.stringify(k.slice(0, 40))}: unknown key`));
  }
  let sealed;
  try {
    sealed = base64Decode(value.sealed, "sealed");
  } catch {
    throw new DocumentError("invalid_schema", "sealed: not standard base64", ["sealed: not standard base64"]);
  }
  if (sealed.length < SEAL_OVERHEAD) {
    throw new DocumentError("invalid_schema", "sealed: shorter than a sealed box", ["sealed: shorter than a sealed box"]);
  }
  return sealed;
}

/**
 * Read a stored purpose's bytes: check them against `expectedHash` (the debit's
 * purposeHash, Uint8Array or 0x-hex) when given, then parse; a sealed one is opened with
 * `ownerKey` ({publicKey, privateKey}). Returns {document, sealed, bytes} where `bytes`
 * are the plain document's bytes.
 */
export function readPurpose(bytes, { expectedHash = null, ownerKey = null } = {}) {
  if (expectedHash !== null) {
    const want = typeof expectedHash === "string" ? fromHex(expectedHash, "purposeHash") : expectedHash;
    if (!bytesEqual(purposeHash(bytes), want)) {
      throw new DocumentError("cid_mismatch", `the content returned is not purpose document ${toHex(want)}: refusing it`);
    }
  }
  const value = parseJsonObject(bytes);
  if (value.schema !== SEALED_PURPOSE_SCHEMA) {
    return { document: validatePurposeDocument(value), sealed: false, bytes };
  }
  const sealed = sealedBytes(value);
  if (!ownerKey) throw new DocumentError("sealed", "sealed to the listing owner; no owner key was given");
  let plain;
  try {
    plain = openSealed(sealed, ownerKey);
  } catch (e) {
    if (!(e instanceof CryptoError)) throw e;
    throw new DocumentError("sealed", "this owner key does not open it");
  }
  const inner = parseJsonObject(plain);
  return { document: validatePurposeDocument(inner), sealed: true, bytes: plain };
}

/** Open a sealed-purpose wrapper with the owner key pair: {document, bytes}. */
export function openSealedPurpose(bytes, ownerKey) {
  const opened = readPurpose(bytes, { ownerKey });
  if (!opened.sealed) throw new DocumentError("invalid_schema", "not a sealed purpose document");
  return { document: opened.document, bytes: opened.bytes };
}
