/**
 * What the hub says about one file, from a HEAD request on `{endpoint}/{id}/resolve/{revision}/{file}`
 * sent as huggingface_hub sends it (`Accept-Encoding: identity`, so sizes are real sizes): `X-Repo-Commit`
 * (the commit the revision points to), `X-Linked-Etag` (LFS: the sha256) else `ETag` (the git blob id),
 * `X-Linked-Size` else `Content-Length`, and for LFS files a 302 `Location` on a CDN, which is where the GET
 * goes. Relative redirects (a renamed repository) are followed, as huggingface_hub does; the redirect to
 * another host is not (its headers are what we need).
 */
import { HubError, hubHttpError, type HubErrorContext } from './hub_errors';
import { discard, header, httpRequest, resolveLocation } from './http_request';

export interface HubRequestContext {
  ctx: HubErrorContext;
  endpoint: string;
  token?: string;
  userAgent: string;
  signal?: AbortSignal;
  /** Idle timeout of metadata requests (huggingface_hub's HF_HUB_ETAG_TIMEOUT, 10 s). */
  timeoutMs?: number;
}

export type FileMetadata =
  | { exists: true; commit: string; etag: string; size?: number; location: string; lfs: boolean }
  /** 404 EntryNotFound; the commit comes from X-Repo-Commit when the hub sent it. */
  | { exists: false; commit?: string };

/** `{endpoint}/{id}/resolve/{revision}/{file}` with huggingface_hub's quoting. */
export function resolveUrl(endpoint: string, id: string, revision: string, file: string): string {
  return `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

/** huggingface_hub's `_normalize_etag`: drops `W/` and the quotes. */
export function normalizeEtag(etag: string | undefined): string | undefined {
  return etag === undefined ? undefined : etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

export function authHeaders(rc: HubRequestContext): Record<string, string> {
  const h: Record<string, string> = { 'User-Agent': rc.userAgent, 'Accept-Encoding': 'identity' };
  if (rc.token !== undefined) h.Authorization = `Bearer ${rc.token}`;
  return h;
}

/** HEADs one file of `rc.ctx.id` at `revision`. Network failures are thrown as NetworkError. */
export async function headFile(rc: HubRequestContext, revision: string, file: string): Promise<FileMetadata> {
  let url = resolveUrl(rc.endpoint, rc.ctx.id, revision, file);
  for (let hop = 0; ; hop++) {
    const res = await httpRequest('HEAD', url, { headers: authHeaders(rc), signal: rc.signal, timeoutMs: rc.timeoutMs ?? 10_000 });
    discard(res);
    const status = res.statusCode ?? 0;
    const h = res.headers;
    const loc = header(h, 'location');
    const isRedirect = status >= 300 && status < 400 && loc !== undefined;
    if (isRedirect && loc!.startsWith('/') && !loc!.startsWith('//') && hop < 5) {
      url = resolveLocation(url, loc!);
      continue;
    }
    if (status === 404 && header(h, 'x-error-code') === 'EntryNotFound') {
      return { exists: false, commit: header(h, 'x-repo-commit') };
    }
    if (!(status >= 200 && status < 300) && !isRedirect) throw hubHttpError(rc.ctx, status, h, file);
    const commit = header(h, 'x-repo-commit');
    if (commit === undefined) {
      throw new HubError('bad-response', `${rc.endpoint} sent no X-Repo-Commit header for ${file} of ${rc.ctx.id}: it does not look like a Hugging Face hub (check HF_ENDPOINT, proxies and firewalls)`);
    }
    const linked = header(h, 'x-linked-etag');
    const etag = normalizeEtag(linked ?? header(h, 'etag'));
    if (!etag) throw new HubError('bad-response', `${rc.endpoint} sent no ETag for ${file} of ${rc.ctx.id}: cannot cache it reliably (check HF_ENDPOINT)`);
    const sizeHeader = header(h, 'x-linked-size') ?? (isRedirect ? undefined : header(h, 'content-length'));
    const size = sizeHeader !== undefined && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : undefined;
    return { exists: true, commit, etag, size, location: isRedirect ? resolveLocation(url, loc!) : url, lfs: linked !== undefined };
  }
}
