/**
 * Keeping messages readable: a problem message is at most MAX_MESSAGE_BYTES (a config with a 600,000-name
 * list must not produce a 5 MB error), lists in messages are cut with "… and N more", and a run of many
 * problems is cut the same way.
 */

/** The longest problem message, in UTF-8 bytes. */
export const MAX_MESSAGE_BYTES = 2048;
/** Characters of a list quoted inside a message. */
const LIST_BUDGET = 400;

/** `items` joined by `sep`, cut after about `budget` characters with "… and N more". */
export function listText(items: readonly string[], sep = ', ', budget = LIST_BUDGET): string {
  let out = '';
  for (let i = 0; i < items.length; i++) {
    const next = i === 0 ? items[i] : `${sep}${items[i]}`;
    if (out.length + next.length > budget && i > 0) return `${out}${sep}… and ${items.length - i} more`;
    out += next.length > budget ? `${next.slice(0, budget)}…` : next;
  }
  return out;
}

/** `message` cut to MAX_MESSAGE_BYTES, ending with "… and N more characters" when cut. */
export function capMessage(message: string, maxBytes = MAX_MESSAGE_BYTES): string {
  if (message.length * 3 <= maxBytes || Buffer.byteLength(message, 'utf8') <= maxBytes) return message;
  // Characters are at most 3 UTF-8 bytes (4 for a surrogate pair, which is 2 characters): keep a safe prefix.
  let keep = Math.floor((maxBytes - 40) / 3);
  while (keep < message.length && Buffer.byteLength(message.slice(0, keep + 64), 'utf8') <= maxBytes - 40) keep += 64;
  // Do not split a surrogate pair.
  const code = message.charCodeAt(keep - 1);
  if (code >= 0xd800 && code <= 0xdbff) keep--;
  return `${message.slice(0, keep)}… and ${message.length - keep} more characters`;
}
