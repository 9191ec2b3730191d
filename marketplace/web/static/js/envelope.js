// Streaming decryption of the DDE1 envelope (docs/protocol.md §9), as storage/envelope.py:
// 65-byte header (magic, format, chunk size, secretstream header, key commitment), then
// secretstream frames of chunk size + 17 bytes, the last one alone tagged FINAL. Memory is
// one frame, whatever the file size; every plaintext chunk handed out is authenticated.
import _sodium from "libsodium-wrappers-sumo";

await _sodium.ready;
const sodium = _sodium;

export const MAGIC = Uint8Array.of(0x44, 0x44, 0x45, 0x31); // "DDE1"
export const FORMAT_VERSION = 1;
export const HEADER_SIZE = 65;
export const FRAME_OVERHEAD = 17;
export const DEFAULT_CHUNK_SIZE = 1 << 20;
export const MAX_CHUNK_SIZE = 64 << 20;
const COMMIT_TAG = new TextEncoder().encode("datadebit/envelope-commit/v1");
const TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
const TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL;

/** The envelope cannot be trusted; `code` is one of bad_magic, unsupported_format,
 * wrong_key, unsupported_chunk_size, chunk_rejected, malformed, truncated, trailing_data,
 * finished; `frame` is the frame index where it failed (or null). */
export class EnvelopeError extends Error {
  constructor(code, message, frame = null) {
    super(message);
    this.name = "EnvelopeError";
    this.code = code;
    this.frame = frame;
  }
}

function commitment(key, committed) {
  const msg = new Uint8Array(COMMIT_TAG.length + committed.length);
  msg.set(COMMIT_TAG);
  msg.set(committed, COMMIT_TAG.length);
  return sodium.crypto_generichash(32, msg, key);
}

function checkKey(key) {
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    throw new EnvelopeError("wrong_key", "a data key is 32 bytes");
  }
}

/**
 * Feed the envelope's bytes in any pieces with `push(bytes)`; each call returns the
 * plaintext chunks it authenticated (possibly none). `finish()` throws unless the FINAL
 * frame was seen with nothing after it. After any error the decryptor refuses more input.
 */
export class EnvelopeDecryptor {
  constructor(dek) {
    checkKey(dek);
    this._key = Uint8Array.from(dek);
    this._header = new Uint8Array(HEADER_SIZE);
    this._headerFill = 0;
    this._state = null;
    this._frame = null; // one frame's buffer, allocated once the chunk size is known
    this._fill = 0;
    this._index = 0;
    this._done = false;
    this._failed = null;
    /** Plaintext bytes handed out so far. */
    this.plaintextSize = 0;
    /** The chunk size from the header (null until it is read). */
    this.chunkSize = null;
  }

  push(bytes) {
    this._usable();
    const out = [];
    try {
      let pos = 0;
      if (this._state === null) {
        const take = Math.min(HEADER_SIZE - this._headerFill, bytes.length);
        this._header.set(bytes.subarray(0, take), this._headerFill);
        this._headerFill += take;
        pos = take;
        this._checkHeaderPrefix();
        if (this._headerFill < HEADER_SIZE) return out;
        this._start();
      }
      while (pos < bytes.length) {
        if (this._done) {
          throw new EnvelopeError("trailing_data", "bytes after the FINAL frame", this._index);
        }
        const take = Math.min(this._frame.length - this._fill, bytes.length - pos);
        this._frame.set(bytes.subarray(pos, pos + take), this._fill);
        this._fill += take;
        pos += take;
        if (this._fill === this._frame.length) out.push(this._pull(this._frame, true));
      }
      return out;
    } catch (e) {
      this._failed = e;
      throw e;
    }
  }

  /** Decrypt what is left (the short last frame); throws on truncation. Returns the last
   * plaintext chunks (possibly none). */
  finish() {
    this._usable();
    try {
      const out = [];
      if (this._state === null) {
        throw new EnvelopeError("truncated",
          `the header is ${this._headerFill} of ${HEADER_SIZE} bytes`, 0);
      }
      if (!this._done) {
        if (this._fill < FRAME_OVERHEAD) {
          const detail = this._fill ? ` (${this._fill} stray bytes)` : "";
          throw new EnvelopeError("truncated",
            `the envelope ends before its FINAL frame${detail}`, this._index);
        }
        out.push(this._pull(this._frame.subarray(0, this._fill), false));
        if (!this._done) {
          throw new EnvelopeError("truncated", "the envelope ends before its FINAL frame",
            this._index);
        }
      }
      this._failed = new EnvelopeError("finished", "the envelope is already finished");
      return out;
    } catch (e) {
      this._failed = e;
      throw e;
    }
  }

  _usable() {
    if (this._failed) throw this._failed;
  }

  _checkHeaderPrefix() {
    const h = this._header;
    const n = Math.min(this._headerFill, MAGIC.length);
    for (let i = 0; i < n; i++) {
      if (h[i] !== MAGIC[i]) throw new EnvelopeError("bad_magic", "not a DDE1 envelope", 0);
    }
    if (this._headerFill > 4 && h[4] !== FORMAT_VERSION) {
      throw new EnvelopeError("unsupported_format", `envelope format ${h[4]} is not supported`, 0);
    }
  }

  _start() {
    const h = this._header;
    const expected = commitment(this._key, h.subarray(0, 33));
    if (!sodium.memcmp(expected, h.subarray(33, 65))) {
      throw new EnvelopeError("wrong_key", "the envelope was not made with this data key", 0);
    }
    const chunkSize = new DataView(h.buffer, h.byteOffset, HEADER_SIZE).getUint32(5);
    if (chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
      throw new EnvelopeError("unsupported_chunk_size", `chunk size ${chunkSize} is out of range`, 0);
    }
    this.chunkSize = chunkSize;
    this._state = sodium.crypto_secretstream_xchacha20poly1305_init_pull(h.subarray(9, 33), this._key);
    this._frame = new Uint8Array(chunkSize + FRAME_OVERHEAD);
  }

  _pull(frame, full) {
    const ad = this._index === 0 ? this._header : null;
    const result = sodium.crypto_secretstream_xchacha20poly1305_pull(this._state, frame, ad);
    if (!result) {
      throw new EnvelopeError("chunk_rejected",
        `frame ${this._index} does not authenticate (tampered, reordered or cut)`, this._index);
    }
    if (result.tag !== TAG_MESSAGE && result.tag !== TAG_FINAL) {
      throw new EnvelopeError("malformed", `frame ${this._index} has tag ${result.tag}`, this._index);
    }
    if (result.tag === TAG_MESSAGE && !full) {
      throw new EnvelopeError("malformed",
        `frame ${this._index} is shorter than the chunk size but not the last`, this._index);
    }
    this._done = result.tag === TAG_FINAL;
    this._index += 1;
    this._fill = 0;
    this.plaintextSize += result.message.length;
    return result.message;
  }
}

/** Decrypt a whole envelope held in memory (tests, small files). */
export function decryptEnvelope(dek, envelope) {
  const decryptor = new EnvelopeDecryptor(dek);
  const chunks = [...decryptor.push(envelope), ...decryptor.finish()];
  const out = new Uint8Array(decryptor.plaintextSize);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

/** Encrypt `plaintext` into an envelope (tests and benchmarks; the page only decrypts). */
export function encryptEnvelope(dek, plaintext, chunkSize = DEFAULT_CHUNK_SIZE) {
  checkKey(dek);
  if (!(chunkSize >= 1 && chunkSize <= MAX_CHUNK_SIZE)) {
    throw new EnvelopeError("unsupported_chunk_size", `chunk size ${chunkSize} is out of range`);
  }
  const { state, header: streamHeader } = sodium.crypto_secretstream_xchacha20poly1305_init_push(dek);
  const header = new Uint8Array(HEADER_SIZE);
  header.set(MAGIC);
  header[4] = FORMAT_VERSION;
  new DataView(header.buffer).setUint32(5, chunkSize);
  header.set(streamHeader, 9);
  header.set(commitment(dek, header.subarray(0, 33)), 33);
  const frames = Math.max(1, Math.ceil(plaintext.length / chunkSize));
  const out = new Uint8Array(HEADER_SIZE + plaintext.length + frames * FRAME_OVERHEAD);
  out.set(header);
  let pos = HEADER_SIZE;
  for (let i = 0; i < frames; i++) {
    const piece = plaintext.subarray(i * chunkSize, (i + 1) * chunkSize);
    const tag = i === frames - 1 ? TAG_FINAL : TAG_MESSAGE;
    const frame = sodium.crypto_secretstream_xchacha20poly1305_push(state, piece,
      i === 0 ? header : null, tag);
    out.set(frame, pos);
    pos += frame.length;
  }
  return out;
}
