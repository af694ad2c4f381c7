/**
 * Configs are UTF-8. A file with other bytes (Latin-1, UTF-16, a binary) is reported at its first bad
 * byte, before anything else reads it, so no later step (YAML, paths, data files) is blamed for it.
 */

export interface Utf8Problem {
  /** Byte offset of the first byte that is not part of a valid UTF-8 sequence. */
  offset: number;
  /** 1-based line and column (in characters) of that byte. */
  line: number;
  column: number;
  message: string;
}

/** The length of the valid UTF-8 sequence at `i`, or 0 when the bytes there are not one. */
function sequenceLength(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c < 0x80) return 1;
  const cont = (k: number): boolean => i + k < b.length && (b[i + k] & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const c1 = b[i + 1];
    if (c === 0xe0 && c1 < 0xa0) return 0; // overlong
    if (c === 0xed && c1 >= 0xa0) return 0; // surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const c1 = b[i + 1];
    if (c === 0xf0 && c1 < 0x90) return 0; // overlong
    if (c === 0xf4 && c1 >= 0x90) return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true });

/** The first byte of `bytes` that is not valid UTF-8, or null when all of it is. */
export function firstInvalidUtf8(bytes: Uint8Array): Utf8Problem | null {
  try {
    fatalDecoder.decode(bytes);
    return null;
  } catch {
    /* find where */
  }
  let i = 0;
  while (i < bytes.length) {
    const n = sequenceLength(bytes, i);
    if (n === 0) break;
    i += n;
  }
  if (i >= bytes.length) return null;
  let lineStart = 0;
  let line = 1;
  for (let k = 0; k < i; k++) {
    if (bytes[k] === 0x0a) {
      line++;
      lineStart = k + 1;
    }
  }
  const column = Buffer.from(bytes.subarray(lineStart, i)).toString('utf8').length + 1;
  const hex = `0x${bytes[i].toString(16).toUpperCase().padStart(2, '0')}`;
  const utf16 = i === 0 && bytes.length >= 2 && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff));
  const hint = utf16 ? 'it looks like UTF-16: save it as UTF-8' : 'save the file as UTF-8 (e.g. it may be Latin-1 / Windows-1252)';
  return {
    offset: i,
    line,
    column,
    message: `the config is not valid UTF-8: byte ${hex} at line ${line}, column ${column} (byte offset ${i}) is not part of a UTF-8 character; ${hint}`,
  };
}
