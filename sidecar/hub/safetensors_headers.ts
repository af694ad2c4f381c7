/**
 * Safetensors headers of a hub model without its weights, for hover, lint, completion and `loraxs params`:
 * two HTTP Range requests per file (bytes 0-7 for the header length N, then bytes 8..8+N-1), nothing after
 * the header. They are cached as JSON records (file, etag, size, header text) in huggingface_hub's assets
 * folder for downstream libraries, `$HF_ASSETS_CACHE/loraxs/<org>--<name>/safetensors-headers/<commit>/<file>.json`
 * (`cached_assets_path("loraxs", id, "safetensors-headers")`): not in the hub cache, whose blobs must be whole
 * files and whose scanner reports unknown folders as corrupt.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsHeader } from '../io/safetensors';
import { checkRelativeFilename } from './cache_layout';
import type { FileMetadata, HubRequestContext } from './file_metadata';
import { hubHttpError, HubError } from './hub_errors';
import { AbortedError, getWithRedirects, readBody } from './http_request';

/** One cached header: enough to rebuild a SafetensorsHeader. */
export interface HeaderRecord {
  file: string;
  etag: string;
  /** The whole file's size in bytes. */
  size: number;
  headerLength: number;
  /** The JSON header, as text. */
  header: string;
}

export function headerCachePath(assetsCache: string, id: string, commit: string, file: string): string {
  checkRelativeFilename(file);
  return path.join(assetsCache, 'loraxs', id.replace('/', '--'), 'safetensors-headers', commit, ...file.split('/')) + '.json';
}

export function readHeaderRecord(p: string): HeaderRecord | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(p, 'utf8')) as HeaderRecord;
    return typeof r.header === 'string' && Number.isSafeInteger(r.size) && Number.isSafeInteger(r.headerLength) ? r : undefined;
  } catch {
    return undefined;
  }
}

export function writeHeaderRecord(p: string, r: HeaderRecord): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  const tmp = `${p}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(r));
  fs.renameSync(tmp, p);
}

async function getRange(rc: HubRequestContext, url: string, file: string, from: number, length: number): Promise<Buffer> {
  const res = await getWithRedirects(url, {
    token: rc.token, authOrigin: rc.endpoint, userAgent: rc.userAgent, range: `bytes=${from}-${from + length - 1}`,
    signal: rc.signal, timeoutMs: rc.timeoutMs,
  });
  const status = res.statusCode ?? 0;
  if (status === 206) {
    const body = await readBody(res, length);
    if (body.length !== length) throw new HubError('bad-response', `${file} of ${rc.ctx.id}: asked for ${length} bytes at ${from}, got ${body.length}`);
    return body;
  }
  res.destroy();
  if (status === 200) {
    throw new HubError('bad-response', `${new URL(url).host} ignored the Range request for ${file} of ${rc.ctx.id}: headers cannot be read without downloading the weights (download the model instead)`);
  }
  throw hubHttpError(rc.ctx, status, res.headers, file);
}

/** Fetches a safetensors file's header with two Range requests (never a weight byte). */
export async function fetchHeaderRecord(rc: HubRequestContext, meta: FileMetadata & { exists: true }, file: string): Promise<HeaderRecord> {
  try {
    const lenBuf = await getRange(rc, meta.location, file, 0, 8);
    const n = lenBuf.readBigUInt64LE(0);
    if (n === 0n || n > BigInt(MAX_HEADER_BYTES) || (meta.size !== undefined && 8n + n > BigInt(meta.size))) {
      throw new HubError('bad-response', `${file} of ${rc.ctx.id} is not a safetensors file (header length ${n})`);
    }
    const headerLength = Number(n);
    const text = (await getRange(rc, meta.location, file, 8, headerLength)).toString('utf8');
    return { file, etag: meta.etag, size: meta.size ?? 8 + headerLength, headerLength, header: text };
  } catch (e) {
    if (e instanceof AbortedError) throw new HubError('cancelled', `reading the safetensors header of ${file} from ${rc.ctx.id} was cancelled`);
    throw e;
  }
}

/**
 * A SafetensorsHeader (as io/safetensors.ts gives for a local file) rebuilt from a cached record, with the
 * local reader's validation; `file` is what messages name.
 */
export function headerFromRecord(r: HeaderRecord, file: string): SafetensorsHeader {
  return parseSafetensorsHeader(file, Buffer.from(r.header, 'utf8'), r.headerLength, r.size);
}
