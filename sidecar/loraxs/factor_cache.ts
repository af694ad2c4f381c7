/**
 * Frozen factors cached on disk per base model, content-addressed: the file name is
 * sha256(fingerprint, module name, rank, init, SVD settings, seed), so any number of adapters (and runs)
 * on the same base model share them, and a change of any input misses the cache instead of reusing a
 * stale entry. Default folder `~/.cache/loraxs/factors/`, overridden by the environment variable
 * LORAXS_CACHE_DIR. Entries are safetensors files (`A`, `B`, `sigma`) written atomically; an unreadable
 * entry is recomputed and overwritten.
 *
 * Loading an adapter: the factors are recomputed (or read from the cache) and their checksum compared with
 * the one the adapter recorded; a mismatch refuses the adapter unless it ships its factors.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { InitKind, SvdConfig } from '../config/types';
import type { Weights } from '../models/types';
import { readSafetensorsHeader, readTensorFloat32, writeSafetensors } from '../io/safetensors';
import { computeFactors, moduleRng, type Factors } from './init';
import { factorsChecksum } from './factor_checksum';
import { CONFIG_FILE, type AdapterSnapshot, type LoraxsAdapterConfig } from './adapter_files';

export interface FactorRecipe {
  /** The base model's fingerprint (checkpointFingerprint). */
  fingerprint: string;
  init: InitKind;
  svd: SvdConfig;
  /** adapter.factor_seed (training.seed for adapters saved before it existed). */
  seed: number;
}

/** The cache folder: $LORAXS_CACHE_DIR, else ~/.cache/loraxs/factors. */
export function factorCacheDir(): string {
  const env = process.env.LORAXS_CACHE_DIR;
  return env && env.length > 0 ? path.resolve(env) : path.join(os.homedir(), '.cache', 'loraxs', 'factors');
}

/** The content address of one module's factors. */
export function factorCacheKey(recipe: FactorRecipe, moduleName: string, rank: number): string {
  const svd = recipe.init === 'random' ? 'none' : recipe.init === 'svd-bottom' ? 'exact' : `${recipe.svd.method}/${recipe.svd.oversamples}/${recipe.svd.powerIters}`;
  const text = JSON.stringify(['loraxs-factors-v1', recipe.fingerprint, moduleName, rank, recipe.init, svd, recipe.seed]);
  return createHash('sha256').update(text).digest('hex');
}

/** A cached entry, or undefined when absent, unreadable or of the wrong shape. */
export function readCachedFactors(dir: string, key: string, rank: number, outFeatures: number, inFeatures: number): Factors | undefined {
  const file = path.join(dir, `${key}.safetensors`);
  if (!fs.existsSync(file)) return undefined;
  try {
    const h = readSafetensorsHeader(file);
    const shapeOk = (name: string, shape: number[]): boolean => {
      const e = h.tensors.get(name);
      return !!e && e.dtype === 'F32' && e.shape.length === shape.length && e.shape.every((d, i) => d === shape[i]);
    };
    if (!shapeOk('A', [rank, inFeatures]) || !shapeOk('B', [outFeatures, rank]) || !h.tensors.has('sigma')) return undefined;
    return { rank, outFeatures, inFeatures, A: readTensorFloat32(h, 'A'), B: readTensorFloat32(h, 'B'), sigma: readTensorFloat32(h, 'sigma') };
  } catch {
    return undefined; // a damaged entry is recomputed
  }
}

export function writeCachedFactors(dir: string, key: string, f: Factors, moduleName: string): void {
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, `${key}.safetensors`), [
    { name: 'A', dtype: 'F32', shape: [f.rank, f.inFeatures], data: f.A },
    { name: 'B', dtype: 'F32', shape: [f.outFeatures, f.rank], data: f.B },
    { name: 'sigma', dtype: 'F32', shape: [f.sigma.length], data: f.sigma },
  ], { format: 'loraxs-factor-cache', module: moduleName });
}

export interface FactorProgress {
  index: number;
  total: number;
  module: string;
  cached: boolean;
  ms: number;
}

export interface FactorsForOptions {
  /** Cache folder; null disables the cache (default factorCacheDir()). */
  cacheDir?: string | null;
  onModule?: (p: FactorProgress) => void;
}

/**
 * The factors of each module (name -> rank), from the cache or computed from `weights` (`<name>.weight`,
 * out × in) and cached. Deterministic per (recipe, module).
 */
export function factorsFor(
  modules: ReadonlyArray<{ name: string; rank: number }>,
  weights: Weights,
  recipe: FactorRecipe,
  opts: FactorsForOptions = {},
): Map<string, Factors> {
  const dir = opts.cacheDir === undefined ? factorCacheDir() : opts.cacheDir;
  const out = new Map<string, Factors>();
  modules.forEach(({ name, rank }, index) => {
    const t0 = performance.now();
    const W = weights.get(`${name}.weight`) as tf.Tensor2D | undefined;
    if (!W || W.shape.length !== 2) throw new LoraxsError(`the model has no 2-D weight ${name}.weight to adapt`, { file: name });
    const [o, i] = W.shape;
    const key = factorCacheKey(recipe, name, rank);
    let f = dir ? readCachedFactors(dir, key, rank, o, i) : undefined;
    const cached = !!f;
    if (!f) {
      f = computeFactors(W, rank, recipe.init, recipe.svd, moduleRng(recipe.seed, name, 'factors'));
      if (dir) {
        try {
          writeCachedFactors(dir, key, f, name);
        } catch {
          /* a read-only or full cache folder slows the next run down but must not fail this one */
        }
      }
    }
    out.set(name, f);
    opts.onModule?.({ index, total: modules.length, module: name, cached, ms: performance.now() - t0 });
  });
  return out;
}

/** The seed an adapter's factors were drawn with: `factor_seed`, or `seed` for adapters saved before factor_seed existed. */
export function factorSeedOf(c: LoraxsAdapterConfig): number {
  return c.factorSeed ?? c.seed;
}

/** Refuses an adapter trained on another base model. */
export function checkBaseModel(adapterDir: string, snap: AdapterSnapshot, fingerprint: string, modelDir: string): void {
  if (snap.config.baseModel.fingerprint !== fingerprint) {
    throw new LoraxsError(
      `this adapter was trained on ${snap.config.baseModel.path} (fingerprint ${snap.config.baseModel.fingerprint.slice(0, 12)}…), ` +
      `but ${modelDir} has fingerprint ${fingerprint.slice(0, 12)}…: an adapter only works on its own base model`,
      { file: path.join(adapterDir, CONFIG_FILE), detail: 'base_model.fingerprint' });
  }
}

/**
 * The factors an adapter was trained with: the shipped ones when the folder has factors.safetensors (its
 * checksum was verified on load), else recomputed/cached ones whose checksum must equal the adapter's.
 */
export function adapterFactors(adapterDir: string, snap: AdapterSnapshot, weights: Weights, opts: FactorsForOptions = {}): Map<string, Factors> {
  if (snap.factors) return snap.factors;
  const c = snap.config;
  const factors = factorsFor(c.modules, weights, { fingerprint: c.baseModel.fingerprint, init: c.init, svd: c.svd, seed: factorSeedOf(c) }, opts);
  const sum = factorsChecksum(c.modules.map((m) => m.name), factors);
  if (sum !== c.factorsSha256) {
    throw new LoraxsError(
      `the factors recomputed from the base model (checksum ${sum.slice(0, 12)}…) differ from those the adapter was trained with ` +
      `(${c.factorsSha256.slice(0, 12)}…): this backend's SVD likely rotated a subspace of nearly tied singular values. ` +
      `Re-export the adapter with \`loraxs export --format loraxs-factors\` on the machine that trained it, so it ships its factors.`,
      { file: path.join(adapterDir, CONFIG_FILE), detail: 'factors_sha256' });
  }
  return factors;
}
