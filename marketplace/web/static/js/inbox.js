// The owner's consent inbox: consent / reject / revoke send the wallet's transactions;
// "Open sealed purposes" derives the owner key from one EncryptionKey signature (owner
// purpose, §17.4) and opens each sealed purpose in this page, after checking the fetched
// bytes against the debit's on-chain purposeHash. Purpose texts are untrusted: they are
// put on the page with textContent only.
import { getAddress } from "ethers";
import { ownerKeyFromSignature } from "./crypto.js";
import { readPurpose } from "./documents.js";
import { say } from "./messages.js";
import { eip712Domain, encryptionKeyTypedData } from "./typed.js";
import * as wallet from "./wallet.js";

const ACTIONS = {
  consent: { method: "consent", done: "Consented: the debit is active.", state: "active" },
  reject: { method: "reject", done: "Rejected: the buyer is refunded.", state: "rejected" },
  revoke: { method: "revoke", done: "Revoked: accrued escrow to you, the rest refunded.", state: "revoked" },
};
const PURPOSE_FIELDS = [
  ["requester", "Requester"], ["purpose", "Purpose"], ["intendedUse", "Intended use"],
  ["retention", "Retention"], ["contact", "Contact"],
];

function pageOwner() {
  const shown = document.getElementById("inbox-owner");
  return shown ? getAddress(shown.textContent.trim()) : null;
}

/** Connect, check the chain and that the wallet is this inbox's owner. */
async function ownerWallet() {
  const account = await wallet.connect();
  const cfg = await wallet.checkChain();
  const owner = pageOwner();
  if (owner && account !== owner) {
    throw new wallet.WalletError("wrong_account",
      `This inbox belongs to ${owner}, but the wallet's account is ${account}: switch accounts in the wallet.`);
  }
  return cfg;
}

async function decide(button) {
  const action = ACTIONS[button.dataset.action];
  const debitId = BigInt(button.dataset.debitId);
  const row = button.closest("li.request");
  const buttons = row ? row.querySelectorAll("button[data-action]") : [button];
  for (const b of buttons) b.disabled = true;
  try {
    await ownerWallet();
    const market = await wallet.market();
    say(`Confirm the ${button.dataset.action} of debit #${debitId} in your wallet…`, "info");
    const tx = await market[action.method](debitId);
    const receipt = await tx.wait();
    if (!receipt || receipt.status !== 1) throw new Error("the transaction failed");
    say(`Debit #${debitId}: ${action.done}`, "success");
    if (row) {
      row.dataset.state = action.state;
      const status = document.createElement("p");
      status.className = "decision";
      status.textContent = action.done;
      row.querySelector(".actions")?.replaceWith(status);
    }
  } catch (e) {
    for (const b of buttons) b.disabled = false;
    say(`Debit #${debitId}: ${wallet.describeError(e)}`, "error");
  }
}

function renderPurpose(target, doc) {
  const list = document.createElement("dl");
  list.className = "purpose-fields";
  for (const [key, label] of PURPOSE_FIELDS) {
    if (!doc[key]) continue;
    const term = document.createElement("dt");
    term.textContent = label;
    const value = document.createElement("dd");
    value.className = `purpose-${key === "intendedUse" ? "intended-use" : key} prose`;
    value.textContent = doc[key];
    list.append(term, value);
  }
  target.replaceChildren(list);
  target.hidden = false;
}

async function openPurposes(button) {
  button.disabled = true;
  try {
    const cfg = await ownerWallet();
    say("Sign the owner encryption-key message in your wallet (it derives the key that opens sealed purposes; nothing is sent)…", "info");
    const ownerKey = ownerKeyFromSignature(await wallet.signTypedData(encryptionKeyTypedData(eip712Domain(cfg), "owner")));
    let opened = 0;
    for (const block of document.querySelectorAll('.purpose[data-sealed="true"]')) {
      const debitId = block.closest("li.request")?.dataset.debitId ?? "?";
      try {
        const response = await fetch(`/content/${encodeURIComponent(block.dataset.purposeCid)}`);
        if (!response.ok) throw new Error(`the server could not give the sealed purpose (${response.status})`);
        const bytes = new Uint8Array(await response.arrayBuffer());
        const { document: doc } = readPurpose(bytes, { expectedHash: block.dataset.purposeHash, ownerKey });
        renderPurpose(block.querySelector(".purpose-opened") || block, doc);
        block.querySelector(".sealed-note")?.remove();
        block.dataset.sealed = "opened";
        opened += 1;
      } catch (e) {
        say(`Debit #${debitId}: the sealed purpose could not be opened: ${wallet.describeError(e)}`, "error");
      }
    }
    if (opened) say(`Opened ${opened} sealed purpose(s).`, "success");
  } catch (e) {
    say(wallet.describeError(e), "error");
  } finally {
    button.disabled = false;
  }
}

function wire() {
  const main = document.getElementById("main");
  if (!main) return;
  main.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button[data-action]") : null;
    if (!button) return;
    if (button.dataset.action === "open-purposes") openPurposes(button);
    else if (button.dataset.action in ACTIONS) decide(button);
  });
}

if (typeof document !== "undefined") wire();
