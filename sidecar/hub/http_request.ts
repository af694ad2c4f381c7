/**
 * One HTTP request with node:http / node:https (no client library): the response head comes back with
 * its body as a stream, not followed through redirects (callers decide, because the Authorization header
 * must not follow a redirect to another origin). Failures to connect or a connection dropped before the
 * head are `NetworkError`s, so callers can tell "unreachable" from an HTTP error.
 */
import * as http from 'node:http';
import * as https from 'node:https';

export class NetworkError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
    this.name = 'NetworkError';
  }
}

/** Thrown when the caller's AbortSignal fired. */
export class AbortedError extends Error {
  constructor() {
    super('aborted');
    this.name = 'AbortedError';
  }
}

export interface RequestOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Idle timeout of the socket in ms (no byte for that long fails the request). */
  timeoutMs?: number;
}

export type Headers = http.IncomingHttpHeaders;

export function header(h: Headers, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Sends `method url` and resolves with the response once its head has arrived. */
export function httpRequest(method: string, url: string, opts: RequestOptions = {}): Promise<http.IncomingMessage> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
  if (!mod) return Promise.reject(new NetworkError(`unsupported URL scheme in ${url}`));
  if (opts.signal?.aborted) return Promise.reject(new AbortedError());
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = mod.request(u, { method, headers: opts.headers, agent: false }, (res) => {
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      if (opts.signal) {
        const abortBody = (): void => { res.destroy(new AbortedError()); };
        opts.signal.addEventListener('abort', abortBody, { once: true });
        res.once('close', () => opts.signal!.removeEventListener('abort', abortBody));
      }
      resolve(res);
    });
    const onAbort = (): void => { req.destroy(new AbortedError()); };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.timeoutMs) {
      req.setTimeout(opts.timeoutMs, () => req.destroy(new NetworkError(`no answer within ${opts.timeoutMs} ms`, 'ETIMEDOUT')));
    }
    req.on('error', (e: NodeJS.ErrnoException) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (settled) return;
      settled = true;
      if (e instanceof AbortedError || e instanceof NetworkError) reject(e);
      else reject(new NetworkError(e.code ? `${e.code} ${u.host}` : e.message, e.code));
    });
    req.end();
  });
}

/** Reads a whole (small) response body. */
export async function readBody(res: http.IncomingMessage, limit = 64 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.destroy();
      throw new NetworkError(`response larger than ${limit} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Drains and discards a body so the socket closes cleanly. */
export function discard(res: http.IncomingMessage): void {
  res.resume();
  res.on('error', () => { /* ignored: nothing was wanted from it */ });
}

/** The URL `location` points to, relative to `base`. */
export function resolveLocation(base: string, location: string): string {
  return new URL(location, base).toString();
}

export function sameOrigin(a: string, b: string): boolean {
  return new URL(a).origin === new URL(b).origin;
}

export interface GetOptions {
  /** Sent as `Authorization: Bearer` only while the URL is on `authOrigin`. */
  token?: string;
  authOrigin: string;
  userAgent?: string;
  /** A `Range` header value, e.g. `bytes=100-`. */
  range?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * GET with redirects followed (up to 10, relative or to another host:port). The token goes to
 * `authOrigin` only: once a redirect leaves it (an LFS file on a CDN), no Authorization header is sent.
 */
export async function getWithRedirects(url: string, o: GetOptions): Promise<http.IncomingMessage> {
  let auth = o.token !== undefined;
  for (let hop = 0; hop <= 10; hop++) {
    if (auth && !sameOrigin(url, o.authOrigin)) auth = false;
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
    if (o.userAgent) headers['User-Agent'] = o.userAgent;
    if (o.range) headers.Range = o.range;
    if (auth) headers.Authorization = `Bearer ${o.token}`;
    const res = await httpRequest('GET', url, { headers, signal: o.signal, timeoutMs: o.timeoutMs ?? 10_000 });
    const loc = header(res.headers, 'location');
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && loc) {
      discard(res);
      url = resolveLocation(url, loc);
      continue;
    }
    return res;
  }
  throw new NetworkError(`too many redirects (last: ${url})`);
}
