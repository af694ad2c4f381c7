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
import { LoraxsError } from '../errors';
import { DTYPE_SIZE, MAX_HEADER_BYTES, numElements, type Dtype, type SafetensorsHeader, type TensorEntry } from '../io/safetensors';
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
 * A SafetensorsHeader (as io/safetensors.ts gives for a local file) rebuilt from a cached record; `file` is
 * what messages name. Validation follows the local reader: known dtypes, shapes, offsets inside the file.
 */
export function headerFromRecord(r: HeaderRecord, file: string): SafetensorsHeader {
  const fail = (m: string, detail?: string): never => { throw new LoraxsError(m, { file, detail }); };
  let json: unknown;
  try {
    json = JSON.parse(r.header);
  } catch (e) {
    fail(`safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('safetensors header must be a JSON object');
  const dataStart = 8 + r.headerLength;
  const dataLength = r.size - dataStart;
  const tensors = new Map<string, TensorEntry>();
  const metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      for (const [k, val] of Object.entries((v ?? {}) as Record<string, unknown>)) if (typeof val === 'string') metadata[k] = val;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e?.dtype !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPE_SIZE, e.dtype)) {
      fail(`tensor '${name}': dtype ${JSON.stringify(e?.dtype)} is not supported (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`, name);
    }
    const dtype = e.dtype as Dtype;
    const shape = e.shape;
    const off = e.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor '${name}': bad shape ${JSON.stringify(shape)}`, name);
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0)) fail(`tensor '${name}': bad data_offsets ${JSON.stringify(off)}`, name);
    const [begin, end] = off as [number, number];
    if (end - begin !== numElements(shape as number[]) * DTYPE_SIZE[dtype] || end > dataLength) {
      fail(`tensor '${name}': data_offsets [${begin}, ${end}] do not fit its ${dtype} shape [${(shape as number[]).join(', ')}] or the ${dataLength}-byte data section`, name);
    }
    tensors.set(name, { name, dtype, shape: [...(shape as number[])], begin, end });
  }
  return { file, headerLength: r.headerLength, dataStart, fileSize: r.size, tensors, metadata };
}

