/**
 * The stdio transport's framing (`Content-Length: N\r\n\r\n` + N bytes of JSON), checked strictly. A
 * framing error cannot be recovered from (where the next message starts is unknown), so the sidecar logs
 * it to stderr and exits non-zero: the client then restarts it after its back-off instead of talking to a
 * server that answers nothing. Errors:
 * - a header that is not `Name: value` lines, has no Content-Length, or a Content-Length that is not a
 *   decimal integer, is 0, or is above MAX_CONTENT_LENGTH_BYTES;
 * - a header longer than MAX_HEADER_BYTES without its blank line;
 * - a message (header or body) that stops arriving for the partial-message timeout (a Content-Length
 *   longer than what was sent): vscode-jsonrpc's own `partialMessageTimeout` for bodies, pinned here,
 *   and the same timeout for headers;
 * - a body that is not valid JSON (a Content-Length too short): the reader's decoding error.
 * Node IPC (what the VS Code client uses) has no framing: these checks apply to `--stdio` only.
 */
import { StreamMessageReader } from 'vscode-languageserver/node';
import type { DataCallback, Disposable, Message } from 'vscode-languageserver/node';

/** A message's body may be at most this long (the largest legitimate one, a 1 MB+ document, is far below). */
export const MAX_CONTENT_LENGTH_BYTES = 64 * 1024 * 1024;
/** Header bytes before the blank line that ends it. */
export const MAX_HEADER_BYTES = 8 * 1024;
/** How long a message may stop arriving midway (pinned; vscode-jsonrpc's default is the same 10 s). */
export const DEFAULT_PARTIAL_MESSAGE_TIMEOUT_MS = 10_000;
/** Tests shorten the partial-message timeout with this variable (milliseconds). */
export const PARTIAL_MESSAGE_TIMEOUT_ENV = 'LORAXS_LSP_PARTIAL_MESSAGE_TIMEOUT_MS';

/** The partial-message timeout: the environment's value when it is a positive integer, else the default. */
export function partialMessageTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[PARTIAL_MESSAGE_TIMEOUT_ENV];
  if (raw !== undefined && /^\d+$/.test(raw.trim())) {
    const n = Number(raw.trim());
    if (n > 0) return n;
  }
  return DEFAULT_PARTIAL_MESSAGE_TIMEOUT_MS;
}

const printable = (s: string): string => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}...` : s);

/** The body length a header block (without its blank line) announces, or why it is malformed. */
export function contentLengthOf(header: string): number | string {
  let length: number | undefined;
  for (const line of header.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) return `header line ${printable(line)} is not 'Name: value'`;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name !== 'content-length') continue;
    if (!/^\d+$/.test(value)) return `Content-Length ${printable(value)} is not a number of bytes`;
    const n = Number(value);
    if (n === 0) return 'Content-Length is 0 (an empty message)';
    if (n > MAX_CONTENT_LENGTH_BYTES) return `Content-Length ${value} is above the limit of ${MAX_CONTENT_LENGTH_BYTES} bytes`;
    length = n;
  }
  return length ?? `the header has no Content-Length: ${printable(header)}`;
}

const TERMINATOR = Buffer.from('\r\n\r\n', 'latin1');

/**
 * Follows the byte stream alongside vscode-jsonrpc's reader (it sees each chunk first) and calls `fatal`
 * once on the first framing error it finds.
 */
export class FramingChecker {
  private header = Buffer.alloc(0);
  /** Body bytes still to come; 0 while reading a header. */
  private bodyLeft = 0;
  private headerTimer: NodeJS.Timeout | undefined;
  private failed = false;

  constructor(private readonly timeoutMs: number, private readonly fatal: (why: string) => void) {}

  /** Whether a message has started and not ended. */
  get midMessage(): boolean {
    return this.bodyLeft > 0 || this.header.length > 0;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (!this.failed && at < chunk.length) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - at);
        this.bodyLeft -= n;
        at += n;
        continue;
      }
      // Reading a header: look for its blank line across the bytes kept so far and this chunk.
      const kept = this.header.length;
      const joined = Buffer.concat([this.header, chunk.subarray(at)]);
      const end = joined.indexOf(TERMINATOR, Math.max(0, kept - 3));
      if (end < 0) {
        if (joined.length > MAX_HEADER_BYTES) return this.fail(`a message header is over ${MAX_HEADER_BYTES} bytes without its blank line`);
        this.header = joined;
        break;
      }
      const length = contentLengthOf(joined.subarray(0, end).toString('latin1'));
      if (typeof length === 'string') return this.fail(length);
      at += end + TERMINATOR.length - kept;
      this.header = Buffer.alloc(0);
      this.bodyLeft = length;
    }
    this.armHeaderTimer();
  }

  /** The input ended: an error when a message was cut off. */
  end(): void {
    if (this.midMessage) this.fail(`the input ended inside a message (${this.bodyLeft > 0 ? `${this.bodyLeft} body bytes missing` : 'an unfinished header'})`);
    this.dispose();
  }

  dispose(): void {
    if (this.headerTimer) clearTimeout(this.headerTimer);
    this.headerTimer = undefined;
  }

  /** An unfinished header that gets no more bytes for the timeout is an error (bodies: the reader's timer). */
  private armHeaderTimer(): void {
    this.dispose();
    if (this.failed || this.header.length === 0) return;
    this.headerTimer = setTimeout(() => this.fail(`a message header stopped arriving for ${this.timeoutMs} ms`), this.timeoutMs);
  }

  private fail(why: string): void {
    if (this.failed) return;
    this.failed = true;
    this.dispose();
    this.fatal(why);
  }
}

/**
 * vscode-jsonrpc's stream reader with the partial-message timeout pinned, reporting whether a `shutdown`
 * request came (the exit code at the end of the input depends on it).
 */
export class CheckedStreamMessageReader extends StreamMessageReader {
  shutdownReceived = false;

  constructor(readable: NodeJS.ReadableStream, timeoutMs: number) {
    super(readable);
    this.partialMessageTimeout = timeoutMs;
  }

  override listen(callback: DataCallback): Disposable {
    return super.listen((message: Message) => {
      if ((message as { method?: unknown }).method === 'shutdown') this.shutdownReceived = true;
      callback(message);
    });
  }
}
