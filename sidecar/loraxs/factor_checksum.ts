/**
 * The checksum that binds an adapter to its frozen factors: sha256 over, for each adapted module in the
 * adapter's module order, its name, rank and shapes, then A's and B's float32 bytes (little-endian,
 * row-major). An adapter whose recomputed factors give another checksum was trained on different factors
 * (another base model, or an SVD that rotated a subspace of nearly tied singular values) and is refused.
 */
import { createHash } from 'node:crypto';
import { assert } from '../errors';
import type { Factors } from './init';

export function factorsChecksum(moduleNames: readonly string[], factors: ReadonlyMap<string, Factors>): string {
  const hash = createHash('sha256');
  for (const name of moduleNames) {
    const f = factors.get(name);
    assert(f, () => `factors of ${name} are missing`);
    hash.update(`${name}\0${f.rank}\0${f.outFeatures}\0${f.inFeatures}\0`);
    hash.update(new Uint8Array(f.A.buffer, f.A.byteOffset, f.A.byteLength));
    hash.update(new Uint8Array(f.B.buffer, f.B.byteOffset, f.B.byteLength));
  }
  return hash.digest('hex');
}
