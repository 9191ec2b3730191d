// The buyer's page: download and decrypt a version in the browser (docs/protocol.md §19).
// The wallet derives the buyer's X25519 key (EncryptionKey signature, §8), keys.js fetches
// and verifies t shares against the on-chain share keys (read through the wallet's
// provider, never from the web server) and opens the capsule, then the ciphertext is
// streamed from /content/{cid} through the CID builder and the envelope decryptor.
// Nothing is saved unless every share, the capsule, every chunk, FINAL and the CID verified:
// with showSaveFilePicker the file is written as we go to the browser's temporary file and
// committed by close() only at the end (abort() otherwise); without it the plaintext is kept
// and handed to a Blob download only after everything verified.
import { CidBuilder, cidToText } from "./cid.js";
import { buyerKeyFromSignature, fromHex } from "./crypto.js";
import { EnvelopeDecryptor } from "./envelope.js";
import { fetchDataKey } from "./keys.js";
import { say } from "./messages.js";
import { eip712Domain, encryptionKeyTypedData } from "./typed.js";
import * as wallet from "./wallet.js";

/** A step of the download failed; `message` is what the page shows. */
export class DownloadError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "DownloadError";
    this.code = code;
  }
}

const shown = (text, limit = 160) => {
  const s = String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
  return s.length > limit ? `${s.slice(0, limit)}…` : s;
};

/** GET a JSON document of the web server; its `{"code","message"}` refusal becomes a
 * DownloadError naming what was asked. */
async function getJson(path, what) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    throw new DownloadError("unreachable", `the web server did not answer for ${what}`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // handled below
  }
  if (!response.ok || body === null || typeof body !== "object") {
    const why = body && typeof body.message === "string" ? `: ${shown(body.message)}` : "";
    throw new DownloadError("server_refused", `could not read ${what} (HTTP ${response.status})${why}`);
  }
  return body;
}

/** committeeAt(epoch) for keys.js, read on-chain through the wallet's provider. */
function onChainCommittee(market) {
  return async (epoch) => {
    const c = await market.committeeAt(epoch);
    const shareKeys = new Map(Array.from(c.shareKeys, (key, i) => [i + 1, fromHex(key, "share key")]));
    return { threshold: Number(c.threshold), shareKeys };
  };
}

/** Where the plaintext goes: a file being written (committed by close) or memory. */
class MemorySink {
  constructor(name) {
    this.name = name;
    this.parts = [];
  }

  async write(chunk) {
    this.parts.push(chunk);
  }

  async close() {
    const url = URL.createObjectURL(new Blob(this.parts, { type: "application/octet-stream" }));
    this.parts = [];
    const link = document.createElement("a");
    link.href = url;
    link.download = this.name;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  async abort() {
    this.parts = [];
  }
}

class FileSink {
  constructor(handle, writable) {
    this.handle = handle;
    this.writable = writable;
  }

  async write(chunk) {
    await this.writable.write(chunk);
  }

  async close() {
    await this.writable.close();
  }

  async abort() {
    try {
      await this.writable.abort();
    } finally {
      // the picker may have created an empty file: leave nothing behind (Chromium only)
      if (typeof this.handle.remove === "function") await this.handle.remove().catch(() => {});
    }
  }
}

/** Asks where to save while the click's user activation lasts (null: no picker, use a
 * Blob download; throws DownloadError "cancelled" if the user closes the dialog). */
async function pickFile(name) {
  if (typeof window.showSaveFilePicker !== "function") return null;
  try {
    const handle = await window.showSaveFilePicker({ suggestedName: name });
    return new FileSink(handle, await handle.createWritable());
  } catch (e) {
    if (e && e.name === "AbortError") throw new DownloadError("cancelled", "download cancelled");
    throw new DownloadError("save_failed", `cannot write the file: ${shown(e && e.message ? e.message : e)}`);
  }
}

/**
 * Download, verify and decrypt one version into `sink` (committed only if everything
 * verified; aborted otherwise). `progress(done, total)`: ciphertext bytes (total null
 * while unknown); `onEvent`: keys.js's per-gateway events. Returns the plaintext size.
 */
export async function downloadVersion({ debitId, listingId, version, cid, sink, progress = () => {},
  onEvent = () => {}, status = () => {} }) {
  try {
    status("Connecting the wallet…");
    await wallet.connect();
    const config = await wallet.checkChain(); // /api/config, and the wallet on its chain
    const published = await getJson(`/api/listings/${listingId}/versions/${version}`,
      `version ${version} of listing ${listingId}`);
    const cidBytes = fromHex(published.cidBytes, "cidBytes");
    // the capsule is bound to these bytes, the content is checked against the text: one CID
    if (published.cid !== cid || cidToText(cidBytes) !== cid) {
      throw new DownloadError("cid_mismatch",
        `the server names CID ${shown(published.cid)} for this version, the page ${shown(cid)}`);
    }
    status("Sign the encryption-key message in your wallet (it derives your decryption key)…");
    const domain = eip712Domain(config);
    const buyerKey = buyerKeyFromSignature(await wallet.signTypedData(encryptionKeyTypedData(domain, "buyer")));
    status("Asking the committee for the key (one signature per gateway)…");
    const market = await wallet.marketRead();
    const dek = await fetchDataKey({
      config, debitId, version, listingId,
      cidBytes, capsule: fromHex(published.capsule, "capsule"),
      buyerKey, signTypedData: wallet.signTypedData, committeeAt: onChainCommittee(market), onEvent,
    });
    buyerKey.privateKey.fill(0);
    status("Downloading and decrypting…");
    const size = await streamContent(cid, dek, sink, progress);
    dek.fill(0);
    await sink.close();
    return size;
  } catch (e) {
    await sink.abort().catch(() => {});
    throw e;
  }
}

/** Stream /content/{cid} through the CID check and the decryptor into `sink`. */
async function streamContent(cid, dek, sink, progress) {
  let response;
  try {
    response = await fetch(`/content/${encodeURIComponent(cid)}`, { cache: "no-store" });
  } catch {
    throw new DownloadError("unreachable", "the web server did not answer for the encrypted file");
  }
  if (!response.ok || !response.body) {
    let why = "";
    try {
      const body = await response.json();
      if (body && typeof body.message === "string") why = `: ${shown(body.message)}`;
    } catch {
      // not JSON
    }
    throw new DownloadError("content_unavailable", `could not fetch the encrypted file (HTTP ${response.status})${why}`);
  }
  const length = Number(response.headers.get("Content-Length"));
  const total = Number.isSafeInteger(length) && length > 0 ? length : null;
  const builder = new CidBuilder();
  const decryptor = new EnvelopeDecryptor(dek);
  const reader = response.body.getReader();
  let received = 0;
  let plaintext = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.length;
      builder.update(value);
      for (const chunk of decryptor.push(value)) {
        plaintext += chunk.length;
        await sink.write(chunk);
      }
      progress(received, total);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
  for (const chunk of decryptor.finish()) { // throws on a truncated envelope
    plaintext += chunk.length;
    await sink.write(chunk);
  }
  const got = builder.finish();
  if (got !== cid) {
    throw new DownloadError("cid_mismatch", `the encrypted file is ${got}, not ${cid}: refusing it`);
  }
  progress(received, received);
  return plaintext;
}

// -- the page --------------------------------------------------------------------------

let busy = false;

function describe(error) {
  if (error instanceof DownloadError) return `${error.message}.`;
  if (error instanceof wallet.WalletError) return error.message;
  if (error && error.name === "KeyFetchError") return `No key: ${error.message}.`;
  if (error && error.name === "EnvelopeError") return `The file failed decryption: ${error.message}.`;
  if (error && error.name === "CidError") return `The encrypted file failed its CID check: ${error.message}.`;
  if (error && error.name === "CryptoError") return `A cryptographic check failed: ${error.message}.`;
  return `Download failed: ${wallet.describeError(error)}`;
}

async function onDownload(button) {
  if (busy) {
    say("A download is already running.", "info");
    return;
  }
  busy = true;
  button.disabled = true;
  const bar = document.getElementById("download-progress");
  const setProgress = (done, total) => {
    if (!bar) return;
    bar.hidden = false;
    bar.dataset.received = String(done);
    if (total) {
      bar.max = total;
      bar.value = done;
      bar.setAttribute("aria-valuetext", `${(done / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`);
    } else {
      bar.removeAttribute("value"); // indeterminate: the server sends no length
      bar.setAttribute("aria-valuetext", `${(done / 1e6).toFixed(1)} MB received`);
    }
  };
  const { debitId, listingId, version, cid } = button.dataset;
  const name = `listing-${listingId}-version-${version}.bin`;
  let line = null; // one status line, updated in place (the message area keeps a few)
  const status = (text) => {
    if (line && line.isConnected) line.textContent = text;
    else line = say(text, "info");
  };
  try {
    const sink = (await pickFile(name)) || new MemorySink(name);
    setProgress(0, null);
    const size = await downloadVersion({
      debitId: BigInt(debitId), listingId: BigInt(listingId), version: Number(version), cid, sink,
      progress: setProgress,
      status,
      onEvent: (e) => { if (e.status !== "ok") say(e.message, "error"); },
    });
    status(`Version ${version} of listing ${listingId}: every share, chunk and the CID verified.`);
    say(`Version ${version} of listing ${listingId} verified and decrypted (${size} bytes): saved as ${name}.`, "success");
  } catch (e) {
    if (bar) bar.value = 0;
    if (line) line.remove(); // the step it stopped at is in the error
    if (e instanceof DownloadError && e.code === "cancelled") {
      say("Download cancelled: nothing was saved.", "info");
    } else {
      say(`${describe(e)} Nothing was saved.`, "error");
    }
  } finally {
    busy = false;
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element
    ? event.target.closest("button[data-action=download]") : null;
  if (button) {
    event.preventDefault();
    onDownload(button);
  }
});
