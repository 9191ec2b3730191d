// The page's wallet: an injected EIP-1193 provider (window.ethereum: MetaMask or any
// browser wallet) through ethers v6. Transactions and signatures are the wallet's; this
// module only asks. The market's address and chain id come from /api/config, its ABI from
// /api/abi; a wallet on another chain is refused with a message before anything is signed.
import { BrowserProvider, Contract, getAddress } from "ethers";
import { say } from "./messages.js";

/** A wallet step that cannot go on; `message` is what the page shows. */
export class WalletError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "WalletError";
    this.code = code;
  }
}

let cachedConfig = null;
let cachedAbi = null;
let cachedProvider = null;

function injected() {
  const ethereum = globalThis.ethereum;
  if (!ethereum || typeof ethereum.request !== "function") {
    throw new WalletError("no_wallet",
      "No wallet found in this browser: install MetaMask (or another wallet), then reload the page.");
  }
  return ethereum;
}

async function getJson(path, what) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" } });
  } catch {
    throw new WalletError("unreachable", `The web server did not answer for ${what}.`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok || body === null) {
    throw new WalletError("server", `The web server could not give ${what}${body && body.message ? `: ${body.message}` : "."}`);
  }
  return body;
}

/** The market's configuration ({chainId, market, gateways}), fetched once. */
export async function config() {
  if (cachedConfig === null) cachedConfig = await getJson("/api/config", "the market's configuration");
  return cachedConfig;
}

async function marketAbi() {
  if (cachedAbi === null) cachedAbi = await getJson("/api/abi", "the market's ABI");
  return cachedAbi;
}

/** ethers' provider over the wallet ("any": it follows the wallet's network changes). */
export function provider() {
  if (cachedProvider === null) cachedProvider = new BrowserProvider(injected(), "any");
  return cachedProvider;
}

/** Ask the wallet for its account (it may prompt); shows it in #wallet-address. */
export async function connect() {
  const accounts = await injected().request({ method: "eth_requestAccounts" });
  if (!Array.isArray(accounts) || accounts.length === 0) {
    throw new WalletError("no_account", "The wallet shared no account.");
  }
  const address = getAddress(accounts[0]);
  showAccount(address);
  return address;
}

/** The connected account (checksummed), or null when none is connected (no prompt). */
export async function account() {
  const accounts = await injected().request({ method: "eth_accounts" });
  return Array.isArray(accounts) && accounts.length ? getAddress(accounts[0]) : null;
}

/** The wallet's chain id, a number. */
export async function chainId() {
  return Number(BigInt(await injected().request({ method: "eth_chainId" })));
}

/** The configuration, after checking the wallet is on the market's chain. */
export async function checkChain() {
  const cfg = await config();
  const current = await chainId();
  if (current !== cfg.chainId) {
    throw new WalletError("wrong_chain",
      `Your wallet is on chain ${current}, but this market is on chain ${cfg.chainId}: switch networks in the wallet and try again.`);
  }
  return cfg;
}

/** EIP-712 signature (eth_signTypedData_v4) of `typedData` by the connected account: "0x…" (65 bytes). */
export async function signTypedData(typedData) {
  const from = await connect();
  const signature = await injected().request({
    method: "eth_signTypedData_v4",
    params: [from, JSON.stringify(typedData)],
  });
  if (typeof signature !== "string" || !/^0x[0-9a-fA-F]{130}$/.test(signature)) {
    throw new WalletError("bad_signature", "The wallet's signature is not a 65-byte signature.");
  }
  return signature;
}

/** The DataMarket on the wallet's signer (for transactions), after the chain check. */
export async function market() {
  const cfg = await checkChain();
  const signer = await provider().getSigner(await connect());
  return new Contract(cfg.market, await marketAbi(), signer);
}

/** The DataMarket on the wallet's provider (reads only, eth_call through the wallet). */
export async function marketRead() {
  const cfg = await config();
  return new Contract(cfg.market, await marketAbi(), provider());
}

/** A sentence for what went wrong in a wallet step (never a stack trace). */
export function describeError(error) {
  if (error instanceof WalletError) return error.message;
  if (error && (error.code === 4001 || error.code === "ACTION_REJECTED")) {
    return "The request was rejected in the wallet; nothing was sent.";
  }
  if (error && error.revert && error.revert.name) {
    return `The contract refused: ${error.revert.name}.`;
  }
  if (error && error.code === "CALL_EXCEPTION") {
    return `The transaction failed: ${error.shortMessage || error.reason || "the contract reverted"}.`;
  }
  if (error && error.code === "INSUFFICIENT_FUNDS") return "The wallet does not hold enough to pay for this (amount and gas).";
  const text = error && (error.shortMessage || error.message) ? error.shortMessage || error.message : String(error);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

function showAccount(address) {
  const shown = document.getElementById("wallet-address");
  if (shown) shown.textContent = address ? address : "";
  const button = document.getElementById("connect-wallet");
  if (button) button.textContent = address ? "Wallet connected" : "Connect wallet";
}

/** Wire the header's connect button; on /owner and /buyer a connection goes to the
 * account's own page. */
function wire() {
  const button = document.getElementById("connect-wallet");
  if (!button) return;
  button.addEventListener("click", async () => {
    try {
      const address = await connect();
      const prompt = document.getElementById("connect-prompt");
      if (prompt && prompt.dataset.target) window.location.assign(prompt.dataset.target + address);
    } catch (e) {
      say(describeError(e), "error");
    }
  });
  const ethereum = globalThis.ethereum;
  if (!ethereum || typeof ethereum.request !== "function") return;
  account().then(showAccount, () => {});
  if (typeof ethereum.on === "function") {
    ethereum.on("accountsChanged", (accounts) => {
      showAccount(Array.isArray(accounts) && accounts.length ? getAddress(accounts[0]) : null);
    });
  }
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
}
