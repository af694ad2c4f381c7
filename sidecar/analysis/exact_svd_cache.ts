/**
 * Exact SVDs of weight matrices, computed once (loraxs/exact_svd.ts, float64) and kept on disk, so an
 * ablation sweep that is cancelled or repeated does not pay for them again. An entry is addressed by the
 * SHA-256 of the matrix's float32 bytes and shape (plus the module name, for readability of the
 * metadata): a merged adapter or another checkpoint misses the cache instead of reusing a stale entry.
 * Entries live in `<factor cache>/exact-svd/<key>.safetensors` (U, S, Vt in F64), written atomically; an
 * unreadable entry is recomputed.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { factorCacheDir } from '../loraxs/factor_cache';
import { exactSvd, type DenseSvd } from '../loraxs/exact_svd';
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../io/safetensors';

/** The cache folder: `<factor cache>/exact-svd` ($LORAXS_CACHE_DIR/exact-svd when set). */
export function exactSvdCacheDir(): string {
  return path.join(factorCacheDir(), 'exact-svd');
}

/** Content address of a (m, n) float32 matrix. */
export function matrixKey(data: Float32Array, m: number, n: number): string {
  const h = createHash('sha256');
  h.update(`loraxs-exact-svd-v1/${m}x${n}/`);
  h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return h.digest('hex');
}

function f64(bytes: Buffer): Float64Array {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float64Array(copy.buffer);
}

/** A cached SVD, or undefined when absent, unreadable or of the wrong shape. */
export function readCachedSvd(dir: string, key: string, m: number, n: number): DenseSvd | undefined {
  const file = path.join(dir, `${key}.safetensors`);
  if (!fs.existsSync(file)) return undefined;
  const k = Math.min(m, n);
  try {
    const h = readSafetensorsHeader(file);
    const ok = (name: string, shape: number[]): boolean => {
      const e = h.tensors.get(name);
      return !!e && e.dtype === 'F64' && e.shape.length === shape.length && e.shape.every((d, i) => d === shape[i]);
    };
    if (!ok('U', [m, k]) || !ok('S', [k]) || !ok('Vt', [k, n])) return undefined;
    return { m, n, k, U: f64(readTensorBytes(h, 'U')), S: f64(readTensorBytes(h, 'S')), Vt: f64(readTensorBytes(h, 'Vt')) };
  } catch {
    return undefined;
  }
}

export interface CachedSvdResult {
  svd: DenseSvd;
  cached: boolean;
  ms: number;
}

/**
 * The exact thin SVD of `data` (m, n) row-major, from the cache or computed and cached.
 * @param cacheDir null disables the cache (default exactSvdCacheDir())
 */
export function cachedExactSvd(data: Float32Array, m: number, n: number, moduleName: string, cacheDir: string | null = exactSvdCacheDir()): CachedSvdResult {
  const t0 = performance.now();
  const key = matrixKey(data, m, n);
  const hit = cacheDir ? readCachedSvd(cacheDir, key, m, n) : undefined;
  if (hit) return { svd: hit, cached: true, ms: performance.now() - t0 };
  const svd = exactSvd(data, m, n);
  if (cacheDir) {
    try {
      fs.mkdirSync(cacheDir, { recursive: true });
      writeSafetensors(path.join(cacheDir, `${key}.safetensors`), [
        { name: 'U', dtype: 'F64', shape: [m, svd.k], data: svd.U },
        { name: 'S', dtype: 'F64', shape: [svd.k], data: svd.S },
        { name: 'Vt', dtype: 'F64', shape: [svd.k, n], data: svd.Vt },
      ], { format: 'loraxs-exact-svd', module: moduleName });
    } catch {
      /* a read-only or full cache folder slows the next sweep down but must not fail this one */
    }
  }
  return { svd, cached: false, ms: performance.now() - t0 };
}
