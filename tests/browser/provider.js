// TEST ONLY (never served by the app): an EIP-1193 provider injected into the page by
// Playwright's add_init_script. It forwards JSON-RPC to anvil, whose dev accounts are
// unlocked, so eth_sendTransaction and eth_signTypedData_v4 are signed by anvil itself, as
// a wallet would. `eth_requestAccounts`/`eth_accounts` answer the one account chosen by the
// test. __CONFIG__ is replaced by {"rpc": anvil's URL, "account": "0x…"}.
(() => {
  "use strict";
  const config = __CONFIG__;
  let nextId = 1;
  const listeners = new Map();

  class ProviderRpcError extends Error {
    constructor(code, message, data) {
      super(message);
      this.code = code;
      this.data = data;
    }
  }

  async function forward(method, params) {
    const response = await fetch(config.rpc, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params: params || [] }),
    });
    const answer = await response.json();
    if (answer.error) {
      throw new ProviderRpcError(answer.error.code, answer.error.message, answer.error.data);
    }
    return answer.result;
  }

  const provider = {
    isDataDebitTestWallet: true,
    async request({ method, params }) {
      window.__walletCalls = window.__walletCalls || [];
      window.__walletCalls.push(method);
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [config.account];
        case "wallet_switchEthereumChain":
        case "wallet_addEthereumChain":
          return null;
        default:
          return forward(method, params);
      }
    },
    on(event, listener) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(listener);
      return provider;
    },
    removeListener(event, listener) {
      listeners.get(event)?.delete(listener);
      return provider;
    },
  };
  Object.defineProperty(window, "ethereum", { value: provider, configurable: false });
  if (config.filePicker === "none") {
    // Playwright cannot answer a native save dialog: take the page's Blob-download path
    window.showSaveFilePicker = undefined;
  } else if (config.filePicker === "fake") {
    // a stand-in for the File System Access API that records what the page does with the
    // file: what it wrote, and whether it committed (close), aborted or removed it
    const file = { name: null, parts: [], closed: false, aborted: false, removed: false };
    window.__savedFile = file;
    window.showSaveFilePicker = async ({ suggestedName }) => {
      file.name = suggestedName;
      return {
        async createWritable() {
          return {
            async write(chunk) { file.parts.push(new Uint8Array(chunk)); },
            async close() { file.closed = true; },
            async abort() { file.aborted = true; },
          };
        },
        async remove() { file.removed = true; },
      };
    };
  }
})();
