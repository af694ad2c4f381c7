/**
 * `resolveHubModel(id)`: a hub id to a local model folder, `snapshots/<commit>/` in the shared Hugging Face
 * cache, downloading only what the engine needs (see model_files.ts) and only what is not cached yet.
 *
 * Online, like huggingface_hub: a HEAD of config.json at the revision gives the commit (recorded in
 * `refs/<revision>`); every other file is asked for at that commit, so a branch that moves meanwhile
 * cannot mix two commits. Files already in the snapshot, and optional files with a `.no_exist` marker,
 * are not asked for again. All HEADs come first, so progress knows the total; then the downloads
 * (resumable, checked; see download.ts).
 *
 * Offline (`HF_HUB_OFFLINE`), or when the hub cannot be reached or refuses (deleted, private, gated), the
 * cache alone answers if it holds the revision completely; otherwise a one-line error says what to do.
 *
 * `headersOnly` (hover, lint, `loraxs params`): config.json and the index as files, the safetensors only as
 * their headers (Range requests; see safetensors_headers.ts); `headers` is filled in the result.
 */
import * as path from 'node:path';
import { readSafetensorsHeader, type SafetensorsHeader } from '../io/safetensors';
import { RepoCache, ensureCacheDirTag, isCommitHash } from './cache_layout';
import { absentOptionalFiles, findCachedSnapshot, listSnapshot } from './cached_model';
import { downloadBlob } from './download';
import { headFile, type FileMetadata, type HubRequestContext } from './file_metadata';
import { readHubEnv, type HubEnv } from './hub_env';
import {
  HubError, binOnly, hubHttpError, noWeights, offlineNotCached, unreachableNotCached, type HubErrorContext,
} from './hub_errors';
import { NetworkError } from './http_request';
import {
  CONFIG_FILE, PYTORCH_WEIGHTS, SENTENCEPIECE_MODEL, SINGLE_WEIGHTS, TOKENIZER_FILES, WEIGHTS_INDEX, shardsOfIndex,
} from './model_files';
import { checkRepoId } from './repo_id';
import { fetchHeaderRecord, headerCachePath, headerFromRecord, readHeaderRecord, writeHeaderRecord } from './safetensors_headers';

export interface HubProgress {
  phase: 'metadata' | 'download' | 'done';
  /** The file being asked about or downloaded. */
  file?: string;
  /** Bytes downloaded so far, over all files of this call (resumed bytes count as downloaded). */
  received: number;
  /** Bytes to download in all (0 when nothing needs downloading); known once the metadata phase is over. */
  total: number;
}

export interface ResolveOptions {
  /** Branch, tag or commit hash (default `main`). */
  revision?: string;
  /** Default: readHubEnv(process.env). */
  env?: HubEnv;
  /** Only config.json, the index and the safetensors headers (never the weights). */
  headersOnly?: boolean;
  onProgress?: (p: HubProgress) => void;
  /** Cancels: partial downloads stay in `*.incomplete` and the next call resumes them. */
  signal?: AbortSignal;
  /** Download attempts in a row without a new byte before giving up (default 5). */
  maxRetries?: number;
  /** Backoff before retry n is n × this (default 1000 ms). */
  retryDelayMs?: number;
  /** Socket idle timeout in ms (default 10 s). */
  timeoutMs?: number;
}

export interface ResolvedHubModel {
  id: string;
  revision: string;
  commit: string;
  /** `snapshots/<commit>`: a model folder (with headersOnly, only config.json and the index are in it). */
  dir: string;
  /** Files in the snapshot folder, relative with `/`. */
  files: string[];
  /** The safetensors weight files, relative. */
  weightFiles: string[];
  /** Optional files the repository does not have at this commit (or, from the cache alone, that are not cached). */
  missing: string[];
  /** True when no request reached the hub (offline, unreachable, or everything cached for a commit hash). */
  fromCache: boolean;
  /** Set when the hub could not be used and the cache answered instead: the reason, for a warning. */
  warning?: string;
  /** With headersOnly: the headers of weightFiles, in order. */
  headers?: SafetensorsHeader[];
}

const USER_AGENT = 'loraxs-studio (huggingface_hub-compatible)';

interface Planned {
  file: string;
  meta: FileMetadata & { exists: true };
  /** Headers-only: fetch the header record instead of the file. */
  headerOnly: boolean;
}

/** Resolves a hub id to a local snapshot folder; see the file comment. Throws HubError (a LoraxsError). */
export async function resolveHubModel(id: string, opts: ResolveOptions = {}): Promise<ResolvedHubModel> {
  checkRepoId(id);
  const env = opts.env ?? readHubEnv();
  const revision = opts.revision ?? 'main';
  const headersOnly = opts.headersOnly ?? false;
  const cache = new RepoCache(env.hubCache, id);
  const ctx: HubErrorContext = { id, revision, endpoint: env.endpoint, hubCache: env.hubCache, tokenSource: env.tokenSource };

  const fromCache = (warning?: string): ResolvedHubModel | string => {
    const snap = findCachedSnapshot(cache, env.assetsCache, revision, headersOnly);
    if (typeof snap === 'string') return snap;
    return finish({
      id, revision, commit: snap.commit, dir: snap.dir, files: snap.files, weightFiles: snap.weightFiles,
      missing: absentOptionalFiles(snap.files), fromCache: true, warning,
    }, env, cache, headersOnly);
  };

  if (env.offline) {
    const r = fromCache();
    if (typeof r === 'string') throw offlineNotCached(ctx, r);
    return r;
  }
  if (isCommitHash(revision)) {
    const r = fromCache();
    if (typeof r !== 'string') return r;
  }

  const rc: HubRequestContext = {
    ctx, endpoint: env.endpoint, token: env.token, userAgent: USER_AGENT, signal: opts.signal, timeoutMs: opts.timeoutMs,
  };
  const progress = (p: HubProgress): void => opts.onProgress?.(p);
  progress({ phase: 'metadata', file: CONFIG_FILE, received: 0, total: 0 });
  let first: FileMetadata;
  try {
    first = await headFile(rc, revision, CONFIG_FILE);
  } catch (e) {
    if (opts.signal?.aborted) throw new HubError('cancelled', `opening ${id} was cancelled`);
    const fallback = e instanceof NetworkError || (e instanceof HubError && ['repo-not-found', 'gated', 'token-refused', 'http'].includes(e.code));
    if (!fallback) throw e;
    const why = e instanceof NetworkError ? `cannot reach ${env.endpoint} (${e.message})` : (e as Error).message;
    const r = fromCache(`${why}; using the cached copy of ${id}`);
    if (typeof r !== 'string') return r;
    if (e instanceof NetworkError) throw unreachableNotCached(ctx, e.message, r);
    throw e;
  }
  if (!first.exists) {
    throw new HubError('no-weights', `${id}${revision === 'main' ? '' : `@${revision}`} has no config.json: it is not a transformers model that LoRA-XS can fine-tune (check the id at ${env.endpoint}/${id})`);
  }
  const commit = first.commit;
  ensureCacheDirTag(env.hubCache);
  cache.writeRef(revision, commit);

  const planned: Planned[] = [];
  const missing: string[] = [];
  /** HEADs `file` at the commit unless cached; undefined when the hub does not have it. */
  const probe = async (file: string, headerOnly = false): Promise<'cached' | Planned | undefined> => {
    if (cache.hasFile(commit, file)) return 'cached';
    if (headerOnly && readHeaderRecord(headerCachePath(env.assetsCache, id, commit, file))) return 'cached';
    if (cache.isMarkedMissing(commit, file)) return undefined;
    progress({ phase: 'metadata', file, received: 0, total: 0 });
    const meta = await headFile(rc, commit, file);
    if (!meta.exists) {
      cache.markMissing(meta.commit ?? commit, file);
      return undefined;
    }
    const p = { file, meta, headerOnly };
    planned.push(p);
    return p;
  };
  const need = async (file: string, headerOnly = false): Promise<void> => {
    if ((await probe(file, headerOnly)) === undefined) throw hubHttpError(ctx, 404, { 'x-error-code': 'EntryNotFound' }, file);
  };

  try {
    if (cache.hasFile(commit, CONFIG_FILE)) { /* nothing to fetch */ } else planned.push({ file: CONFIG_FILE, meta: first, headerOnly: false });
    let weightFiles: string[];
    if (await probe(SINGLE_WEIGHTS, headersOnly)) {
      weightFiles = [SINGLE_WEIGHTS];
    } else if (await probe(WEIGHTS_INDEX)) {
      await fetchPlanned(planned.splice(0), rc, cache, env, opts, progress, false); // the index names the shards
      weightFiles = shardsOfIndex(cache.pointerPath(commit, WEIGHTS_INDEX), id);
      for (const f of weightFiles) await need(f, headersOnly);
    } else {
      for (const f of PYTORCH_WEIGHTS) if (await probe(f)) throw binOnly(ctx, f);
      throw noWeights(ctx);
    }
    if (!headersOnly) {
      for (const f of TOKENIZER_FILES) if (!(await probe(f))) missing.push(f);
      if (missing.includes('tokenizer.json') && !(await probe(SENTENCEPIECE_MODEL))) missing.push(SENTENCEPIECE_MODEL);
    }
    await fetchPlanned(planned, rc, cache, env, opts, progress);
    const dir = cache.snapshotDir(commit);
    return finish({ id, revision, commit, dir, files: listSnapshot(dir), weightFiles, missing, fromCache: false }, env, cache, headersOnly);
  } catch (e) {
    if (e instanceof NetworkError) {
      if (opts.signal?.aborted) throw new HubError('cancelled', `opening ${id} was cancelled`);
      throw unreachableNotCached(ctx, e.message);
    }
    throw e;
  }
}

/**
 * The cache alone, synchronously (never a request): what resolveHubModel gives offline, or a string naming
 * the first thing that is not cached. For the language server's lint and hover, which answer at once.
 */
export function resolveHubModelFromCache(id: string, opts: Pick<ResolveOptions, 'revision' | 'env' | 'headersOnly'> = {}): ResolvedHubModel | string {
  checkRepoId(id);
  const env = opts.env ?? readHubEnv();
  const revision = opts.revision ?? 'main';
  const headersOnly = opts.headersOnly ?? false;
  const cache = new RepoCache(env.hubCache, id);
  const snap = findCachedSnapshot(cache, env.assetsCache, revision, headersOnly);
  if (typeof snap === 'string') return snap;
  return finish({
    id, revision, commit: snap.commit, dir: snap.dir, files: snap.files, weightFiles: snap.weightFiles,
    missing: absentOptionalFiles(snap.files), fromCache: true,
  }, env, cache, headersOnly);
}

/** Downloads (or fetches the headers of) the planned files, reporting progress over all of them. */
async function fetchPlanned(planned: Planned[], rc: HubRequestContext, cache: RepoCache, env: HubEnv, opts: ResolveOptions,
  progress: (p: HubProgress) => void, last = true): Promise<void> {
  const total = planned.reduce((s, p) => s + (p.headerOnly || cache.hasFile(p.meta.commit, p.file) ? 0 : p.meta.size ?? 0), 0);
  let done = 0;
  for (const p of planned) {
    const { file, meta } = p;
    if (p.headerOnly) {
      progress({ phase: 'download', file, received: done, total });
      const record = await fetchHeaderRecord(rc, meta, file);
      writeHeaderRecord(headerCachePath(env.assetsCache, cache.id, meta.commit, file), record);
      continue;
    }
    await downloadBlob({
      ctx: rc.ctx, file, url: meta.location, authOrigin: new URL(env.endpoint).origin, token: env.token, userAgent: rc.userAgent,
      etag: meta.etag, blobPath: cache.blobPath(meta.etag), lockPath: cache.lockPath(meta.etag), expectedSize: meta.size,
      onBytes: (received) => progress({ phase: 'download', file, received: done + received, total }),
      signal: opts.signal, maxRetries: opts.maxRetries, retryDelayMs: opts.retryDelayMs, timeoutMs: opts.timeoutMs,
    });
    done += meta.size ?? 0;
    cache.linkPointer(meta.commit, file, meta.etag);
  }
  if (last) progress({ phase: 'done', received: done, total });
}

/** Adds the safetensors headers in headers-only mode (from whole cached files or header records). */
function finish(r: ResolvedHubModel, env: HubEnv, cache: RepoCache, headersOnly: boolean): ResolvedHubModel {
  if (!headersOnly) return r;
  r.headers = r.weightFiles.map((f) => {
    if (cache.hasFile(r.commit, f)) return readSafetensorsHeader(cache.pointerPath(r.commit, f));
    const rec = readHeaderRecord(headerCachePath(env.assetsCache, r.id, r.commit, f));
    if (!rec) throw new HubError('offline-not-cached', `the safetensors header of ${f} of ${r.id} is not cached`);
    return headerFromRecord(rec, `${r.id}/${f}`);
  });
  return r;
}

/** A headers-only result's headers by absolute path in its snapshot folder (for io/model_folder.ts openCheckpoint). */
export function headerMap(r: ResolvedHubModel): Map<string, SafetensorsHeader> {
  const out = new Map<string, SafetensorsHeader>();
  r.headers?.forEach((h, i) => out.set(path.join(r.dir, ...r.weightFiles[i].split('/')), h));
  return out;
}
