/**
 * Resolving a hub model from the cache alone (offline, or when the hub cannot be reached): the revision's
 * commit from `refs/` (or the commit hash itself), then a snapshot with config.json and every weight file.
 * Works on caches written by Python's huggingface_hub too (with or without `.no_exist` markers).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RepoCache } from './cache_layout';
import { CONFIG_FILE, SENTENCEPIECE_MODEL, SINGLE_WEIGHTS, TOKENIZER_FILES, WEIGHTS_INDEX, shardsOfIndex } from './model_files';
import { headerCachePath, readHeaderRecord } from './safetensors_headers';

export interface CachedSnapshot {
  commit: string;
  dir: string;
  /** Files in the snapshot, relative, with `/`. */
  files: string[];
  /** The safetensors files, relative. */
  weightFiles: string[];
  /** Weight files present only as cached headers (headers-only mode). */
  headerOnly: string[];
}

/** Lists the files under a snapshot folder (links followed), relative with `/`. */
export function listSnapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, r);
      else if (fs.existsSync(p)) out.push(r);
    }
  };
  if (fs.existsSync(dir)) walk(dir, '');
  return out.sort();
}

/**
 * The cached snapshot of `revision`, or the first thing missing (a string) when it is not complete. With
 * `headersOnly`, a weight file may be present as a cached header record instead of the file.
 */
export function findCachedSnapshot(cache: RepoCache, assetsCache: string, revision: string, headersOnly: boolean): CachedSnapshot | string {
  const commit = cache.commitFor(revision);
  if (commit === undefined) return `refs/${revision}`;
  const has = (f: string): boolean => cache.hasFile(commit, f);
  const hasHeader = (f: string): boolean => headersOnly && readHeaderRecord(headerCachePath(assetsCache, cache.id, commit, f)) !== undefined;
  if (!has(CONFIG_FILE)) return CONFIG_FILE;
  let weightFiles: string[];
  if (has(SINGLE_WEIGHTS) || hasHeader(SINGLE_WEIGHTS)) weightFiles = [SINGLE_WEIGHTS];
  else if (has(WEIGHTS_INDEX)) weightFiles = shardsOfIndex(cache.pointerPath(commit, WEIGHTS_INDEX), cache.id);
  else return SINGLE_WEIGHTS;
  const headerOnly: string[] = [];
  for (const f of weightFiles) {
    if (has(f)) continue;
    if (!hasHeader(f)) return f;
    headerOnly.push(f);
  }
  const dir = cache.snapshotDir(commit);
  return { commit, dir, files: listSnapshot(dir), weightFiles, headerOnly };
}

/** Optional files neither in the snapshot (they are absent, or were never fetched). */
export function absentOptionalFiles(files: string[]): string[] {
  const optional = files.includes('tokenizer.json') ? TOKENIZER_FILES : [...TOKENIZER_FILES, SENTENCEPIECE_MODEL];
  return optional.filter((f) => !files.includes(f));
}

/**
 * The cached snapshot folder of `revision` of `id` when it holds config.json, else undefined: a cheap,
 * synchronous look (no request, no weights) for choosing a config's defaults by model family.
 */
export function cachedConfigDir(hubCache: string, id: string, revision: string): string | undefined {
  try {
    const cache = new RepoCache(hubCache, id);
    const commit = cache.commitFor(revision);
    return commit !== undefined && cache.hasFile(commit, CONFIG_FILE) ? cache.snapshotDir(commit) : undefined;
  } catch {
    return undefined;
  }
}
