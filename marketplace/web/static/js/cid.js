// The CIDv1 `ipfs add --cid-version=1` gives a file (docs/protocol.md §10), computed while
// streaming, byte-identical to storage/cid.py + storage/unixfs.py: 262144-byte raw leaves,
// a balanced dag-pb/UnixFS tree of at most 174 links per node, a one-chunk file (and the
// empty file) is its raw leaf alone. Memory: one chunk plus 174 links per tree level.
import _sodium from "libsodium-wrappers-sumo";

await _sodium.ready;
const sodium = _sodium;

export const CHUNK_SIZE = 262144;
export const MAX_LINKS = 174;
export const CODEC_RAW = 0x55;
export const CODEC_DAG_PB = 0x70;
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** A CID that is not one this project makes, or content that does not match its CID. */
export class CidError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "CidError";
    this.code = code;
  }
}

/** Binary CIDv1 (36 bytes): 0x01 || codec || 0x12 0x20 || SHA-256 digest. */
export function cidFromDigest(codec, digest) {
  const out = new Uint8Array(36);
  out.set([0x01, codec, 0x12, 0x20]);
  out.set(digest, 4);
  return out;
}

/** The raw-codec CID of one block (a leaf, or a stored document). */
export function rawCid(block) {
  return cidFromDigest(CODEC_RAW, sodium.crypto_hash_sha256(block));
}

/** Base32 multibase text (`b` + RFC 4648 lowercase, no padding) of a binary CID. */
export function cidToText(binary) {
  let out = "b";
  let buffer = 0;
  let bits = 0;
  for (const byte of binary) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

/** Binary CID from its base32 text, refusing anything but CIDv1 sha2-256 raw/dag-pb. */
export function cidFromText(text) {
  if (typeof text !== "string" || !/^b[a-z2-7]+$/.test(text)) {
    throw new CidError("malformed", "not a base32 CIDv1 text");
  }
  const out = [];
  let buffer = 0;
  let bits = 0;
  for (const ch of text.slice(1)) {
    buffer = ((buffer << 5) | BASE32.indexOf(ch)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  const binary = Uint8Array.from(out);
  if (binary.length !== 36 || binary[0] !== 1 || (binary[1] !== CODEC_RAW && binary[1] !== CODEC_DAG_PB)
      || binary[2] !== 0x12 || binary[3] !== 0x20 || cidToText(binary) !== text) {
    throw new CidError("malformed", "not a CIDv1 with sha2-256 and codec raw or dag-pb");
  }
  return binary;
}

// -- dag-pb / UnixFS encoding -----------------------------------------------------------

function varint(value, out) {
  let v = value; // a Number up to 2^53: division, not 32-bit shifts
  while (v > 0x7f) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function intField(field, value, out) {
  varint((field << 3) | 0, out);
  varint(value, out);
}

function bytesField(field, payload, out) {
  varint((field << 3) | 2, out);
  varint(payload.length, out);
  for (const b of payload) out.push(b);
}

/** A dag-pb node: for each link (Hash, empty Name, Tsize), then Data = UnixFS File with
 * filesize and one blocksizes entry per link, as storage/unixfs.encode_file_node. */
export function encodeFileNode(links) {
  const out = [];
  for (const link of links) {
    const encoded = [];
    bytesField(1, link.cid, encoded);
    bytesField(2, [], encoded);
    intField(3, link.tsize, encoded);
    bytesField(2, encoded, out);
  }
  const unixfs = [];
  intField(1, 2, unixfs);
  intField(3, links.reduce((n, l) => n + l.filesize, 0), unixfs);
  for (const link of links) intField(4, link.filesize, unixfs);
  bytesField(1, unixfs, out);
  return Uint8Array.from(out);
}

/** Feed a file's bytes in any pieces with `update`; `finish()` gives its CID text
 * (`cidBytes` then holds the binary CID). The layout options exist for the vectors'
 * small multi-level trees; the defaults are the real layout. */
export class CidBuilder {
  constructor({ chunkSize = CHUNK_SIZE, maxLinks = MAX_LINKS } = {}) {
    if (!(Number.isSafeInteger(chunkSize) && chunkSize >= 1 && Number.isSafeInteger(maxLinks) && maxLinks >= 2)) {
      throw new CidError("malformed", "chunkSize must be >= 1 and maxLinks >= 2");
    }
    this._chunkSize = chunkSize;
    this._maxLinks = maxLinks;
    this._chunk = new Uint8Array(chunkSize);
    this._fill = 0;
    this._levels = [[]];
    this._leaves = 0;
    this.size = 0;
    this.cidBytes = null;
  }

  update(bytes) {
    if (this.cidBytes !== null) throw new CidError("finished", "update() after finish()");
    this.size += bytes.length;
    let pos = 0;
    if (this._fill > 0) {
      const take = Math.min(this._chunkSize - this._fill, bytes.length);
      this._chunk.set(bytes.subarray(0, take), this._fill);
      this._fill += take;
      pos = take;
      if (this._fill < this._chunkSize) return;
      this._leaf(this._chunk);
      this._fill = 0;
    }
    while (bytes.length - pos >= this._chunkSize) {
      this._leaf(bytes.subarray(pos, pos + this._chunkSize));
      pos += this._chunkSize;
    }
    this._chunk.set(bytes.subarray(pos), 0);
    this._fill = bytes.length - pos;
  }

  finish() {
    if (this.cidBytes === null) {
      if (this._fill > 0 || this._leaves === 0) {
        this._leaf(this._chunk.subarray(0, this._fill));
        this._fill = 0;
      }
      this.cidBytes = this._closeLevels();
    }
    return cidToText(this.cidBytes);
  }

  _leaf(chunk) {
    this._leaves += 1;
    this._push(0, { cid: rawCid(chunk), tsize: chunk.length, filesize: chunk.length });
  }

  _push(level, link) {
    if (level === this._levels.length) this._levels.push([]);
    this._levels[level].push(link);
    if (this._levels[level].length === this._maxLinks) {
      const parent = this._parent(this._levels[level]);
      this._levels[level] = [];
      this._push(level + 1, parent);
    }
  }

  _parent(links) {
    const block = encodeFileNode(links);
    return {
      cid: cidFromDigest(CODEC_DAG_PB, sodium.crypto_hash_sha256(block)),
      tsize: block.length + links.reduce((n, l) => n + l.tsize, 0),
      filesize: links.reduce((n, l) => n + l.filesize, 0),
    };
  }

  _closeLevels() {
    for (let level = 0; ; level++) {
      const links = this._levels[level];
      if (level === this._levels.length - 1 && links.length === 1) return links[0].cid;
      if (links.length > 0) {
        this._levels[level] = [];
        this._push(level + 1, this._parent(links));
      }
    }
  }
}

/** Check bytes against an expected CID (text or binary); throws CidError "cid_mismatch". */
export function checkCid(builderOrBytes, expected) {
  let builder = builderOrBytes;
  if (builderOrBytes instanceof Uint8Array) {
    builder = new CidBuilder();
    builder.update(builderOrBytes);
  }
  const text = builder.finish();
  const want = typeof expected === "string" ? expected : cidToText(expected);
  if (text !== want) {
    throw new CidError("cid_mismatch", `the content is ${text}, not ${want}: refusing it`);
  }
  return text;
}
