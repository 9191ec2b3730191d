// Messages for the user in #messages (role=status, aria-live=polite): one <p> per message
// with class "message" and its kind. Text only (textContent): messages may quote what a
// listing, a purpose, a gateway or a wallet said, all of them untrusted.

const KINDS = new Set(["error", "info", "success"]);
/** How many messages stay on the page (older ones are removed). */
const KEPT = 6;

/** Show `text` as a message of `kind` ("error" | "info" | "success"); returns its element. */
export function say(text, kind = "info") {
  const box = document.getElementById("messages");
  const shownKind = KINDS.has(kind) ? kind : "info";
  const line = document.createElement("p");
  line.className = `message ${shownKind}`;
  line.textContent = String(text);
  if (!box) return line;
  box.append(line);
  while (box.children.length > KEPT) box.firstElementChild.remove();
  return line;
}

/** Remove every message. */
export function clearMessages() {
  const box = document.getElementById("messages");
  if (box) box.replaceChildren();
}
