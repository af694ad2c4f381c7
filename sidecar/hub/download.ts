/**
 * Downloading one blob into the cache: `blobs/<etag>.incomplete` first, resumed with an HTTP Range request
 * from whatever is already there (after an interruption, a cancel or a dropped connection), then checked
 * and renamed to `blobs/<etag>`.
 *
 * Checks: the size (X-Linked-Size / Content-Length from the HEAD) always; the content against the etag when
 * the etag says what it is: 64 hex digits are the sha256 of an LFS file (X-Linked-Etag), hashed while the
 * bytes arrive; 40 hex digits are the git blob id of a regular file, sha1("blob <size>\0" + content),
 * checked after the download (these files are small). Any other etag form is not checked. A mismatch
 * deletes the partial file and nothing is linked.
 *
 * Redirects are followed (up to 10; relative or to another host:port); the Authorization header is sent
 * only to the hub's own origin, never to the host a redirect leads to (LFS files are served by a CDN).
 * A dropped connection is retried with backoff, resuming from the bytes received; it gives up after
 * `maxRetries` attempts in a row that brought no new byte.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HubError, cancelled, hubHttpError, type HubErrorContext } from './hub_errors';
import { AbortedError, NetworkError, discard, getWithRedirects, header } from './http_request';
import { withBlobLock } from './blob_lock';

export interface BlobDownload {
  ctx: HubErrorContext;
  /** The repository file, for messages and progress. */
  file: string;
  /** Where to GET: the resolve URL, or the location its HEAD redirected to. */
  url: string;
  /** The only origin the token may be sent to (the hub endpoint). */
  authOrigin: string;
  token?: string;
  userAgent?: string;
  etag: string;
  blobPath: string;
  lockPath: string;
  expectedSize?: number;
  /** Called as bytes arrive: bytes on disk so far and the total when known. */
  onBytes?: (received: number, total: number | undefined) => void;
  signal?: AbortSignal;
  /** Attempts in a row without a new byte before giving up (default 5). */
  maxRetries?: number;
  /** Backoff before retry n is n × this (default 1000 ms). */
  retryDelayMs?: number;
  /** Socket idle timeout (default 10 s, huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT). */
  timeoutMs?: number;
}

const SHA256 = /^[0-9a-f]{64}$/;
const GIT_SHA1 = /^[0-9a-f]{40}$/;

function sizeOf(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = (): void => { clearTimeout(t); reject(new AbortedError()); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Feeds bytes [from, to) of `file` into `hash`. */
function hashFileRange(hash: Hash, file: string, from: number, to: number): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let pos = from; pos < to;) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, to - pos), pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The git blob id of a file: sha1 over `blob <size>\0` and the content. */
export function gitBlobSha1(file: string): string {
  const size = fs.statSync(file).size;
  const h = createHash('sha1').update(`blob ${size}\0`);
  hashFileRange(h, file, 0, size);
  return h.digest('hex');
}

/** sha256 of a whole file (to check a cached blob on demand). */
export function fileSha256(file: string): string {
  const h = createHash('sha256');
  hashFileRange(h, file, 0, fs.statSync(file).size);
  return h.digest('hex');
}

/** Checks a finished file against its etag; returns a description of the mismatch, or undefined. */
export function etagMismatch(file: string, etag: string): string | undefined {
  if (SHA256.test(etag)) {
    const got = fileSha256(file);
    return got === etag ? undefined : `sha256 ${got}, expected ${etag}`;
  }
  if (GIT_SHA1.test(etag)) {
    const got = gitBlobSha1(file);
    return got === etag ? undefined : `git blob id ${got}, expected ${etag}`;
  }
  return undefined;
}

/** Parses `bytes a-b/total`. */
function contentRange(v: string | undefined): { start: number; total?: number } | undefined {
  const m = v && /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

/**
 * Downloads `d.url` into `d.blobPath` (resuming `<blob>.incomplete`), checks it and renames it into place.
 * Returns at once when the blob already exists. Concurrent calls for one blob (this process or others)
 * wait for each other.
 */
export async function downloadBlob(d: BlobDownload): Promise<void> {
  if (fs.existsSync(d.blobPath)) return;
  fs.mkdirSync(path.dirname(d.blobPath), { recursive: true });
  await withBlobLock(d.lockPath, d.signal, async () => {
    if (fs.existsSync(d.blobPath)) return;
    await fetchToIncomplete(d);
  });
}

async function fetchToIncomplete(d: BlobDownload): Promise<void> {
  const incomplete = `${d.blobPath}.incomplete`;
  const maxRetries = d.maxRetries ?? 5;
  let expected = d.expectedSize;
  let hash: Hash | undefined = SHA256.test(d.etag) ? createHash('sha256') : undefined;
  let hashed = 0;
  let failures = 0;
  let lastError = '';
  const truncate = (): void => {
    fs.writeFileSync(incomplete, '');
    if (hash) { hash = createHash('sha256'); hashed = 0; }
  };
  for (;;) {
    let offset = sizeOf(incomplete);
    if (expected !== undefined && offset > expected) { truncate(); offset = 0; }
    if (expected !== undefined && offset === expected) break;
    if (hash && hashed > offset) { hash = createHash('sha256'); hashed = 0; }
    if (hash && hashed < offset) { hashFileRange(hash, incomplete, hashed, offset); hashed = offset; }
    const before = offset;
    let fd: number | undefined;
    try {
      const res = await getWithRedirects(d.url, {
        token: d.token, authOrigin: d.authOrigin, userAgent: d.userAgent, range: offset > 0 ? `bytes=${offset}-` : undefined,
        signal: d.signal, timeoutMs: d.timeoutMs,
      });
      const status = res.statusCode ?? 0;
      if (status === 416 && offset > 0) { discard(res); truncate(); throw new NetworkError('range not satisfiable; starting over'); }
      if (status !== 200 && status !== 206) {
        discard(res);
        throw hubHttpError(d.ctx, status, res.headers, d.file);
      }
      let total: number | undefined;
      if (status === 206) {
        const cr = contentRange(header(res.headers, 'content-range'));
        if (!cr || cr.start !== offset) { discard(res); truncate(); throw new NetworkError('the server resumed at the wrong offset; starting over'); }
        total = cr.total;
      } else {
        if (offset > 0) { truncate(); offset = 0; } // the server ignored Range: start again from byte 0
        const len = header(res.headers, 'content-length');
        total = len !== undefined ? Number(len) : undefined;
      }
      if (expected === undefined) expected = total;
      else if (total !== undefined && total !== expected) {
        discard(res);
        throw new HubError('integrity', `${d.file} of ${d.ctx.id} is ${total} bytes on ${new URL(d.url).host} but the hub announced ${expected}: run again (if it repeats, the mirror or proxy serves another file)`);
      }
      fd = fs.openSync(incomplete, 'a');
      for await (const chunk of res) {
        const b = chunk as Buffer;
        fs.writeSync(fd, b);
        hash?.update(b);
        offset += b.length;
        hashed = hash ? offset : hashed;
        d.onBytes?.(offset, expected);
      }
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fd = undefined;
      if (expected === undefined) break; // no size known: the end of the body is the end of the file
      if (offset < expected) throw new NetworkError(`connection closed after ${offset} of ${expected} bytes`);
      if (offset > expected) {
        truncate();
        throw new HubError('integrity', `${d.file} of ${d.ctx.id}: received more than the ${expected} bytes announced; the download was deleted: run again`);
      }
      break;
    } catch (e) {
      if (fd !== undefined) try { fs.closeSync(fd); } catch { /* already failing */ }
      if (e instanceof AbortedError || d.signal?.aborted) throw cancelled(d.ctx, d.file, sizeOf(incomplete));
      if (e instanceof HubError) throw e;
      lastError = (e as Error).message;
      failures = sizeOf(incomplete) > before ? 1 : failures + 1;
      if (failures > maxRetries) {
        throw new HubError('http', `download of ${d.file} from ${new URL(d.url).host} for ${d.ctx.id} failed ${failures} times in a row (${lastError}); the ${sizeOf(incomplete)} bytes received are kept: run again to resume`);
      }
      try {
        await delay((d.retryDelayMs ?? 1000) * failures, d.signal);
      } catch {
        throw cancelled(d.ctx, d.file, sizeOf(incomplete));
      }
    }
  }
  verifyAndPlace(d, incomplete, hash, hashed);
}

function verifyAndPlace(d: BlobDownload, incomplete: string, hash: Hash | undefined, hashed: number): void {
  let mismatch: string | undefined;
  if (hash && hashed === sizeOf(incomplete)) {
    const got = hash.digest('hex');
    if (got !== d.etag) mismatch = `sha256 ${got}, expected ${d.etag}`;
  } else {
    mismatch = etagMismatch(incomplete, d.etag);
  }
  if (mismatch !== undefined) {
    fs.rmSync(incomplete, { force: true });
    throw new HubError('integrity', `${d.file} of ${d.ctx.id} downloaded from ${new URL(d.url).host} is corrupt (${mismatch}); it was deleted and not linked: run again (if it repeats, a proxy or mirror is altering the file)`);
  }
  fs.renameSync(incomplete, d.blobPath);
}
