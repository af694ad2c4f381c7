/**
 * Singular-value retention (appendix D, Tables 6–8): W′ = Σ_{i ∈ kept} σ_i u_i v_iᵀ with
 * k = round(f · min(m, n)) singular values kept from the top, middle or bottom of W's spectrum, the bias
 * untouched. Fraction 1 is W itself (the original tensor, not a reconstruction); fraction 0 is a zero
 * weight.
 */
import * as tf from '../backend/tf';
import type { DenseSvd } from '../loraxs/exact_svd';
import { keptRange, type Region } from './spectrum_regions';
import { partialReconstruction, type SvdTensors } from './svd_tensors';

/**
 * The ablated weight. Fraction 1 returns `original` itself (the caller must not dispose it as a new
 * tensor: check `result === original`).
 * @param original (m, n) the weight as the model holds it
 * @returns (m, n)
 */
export function retainedWeight(original: tf.Tensor2D, svd: SvdTensors, region: Region, fraction: number): tf.Tensor2D {
  if (fraction === 1) return original;
  if (fraction === 0) return tf.zerosLike(original);
  return partialReconstruction(svd, keptRange(region, svd.k, fraction));
}

/**
 * The same on the CPU in float64, for checks: Σ_{i ∈ kept} σ_i u_i v_iᵀ as a row-major (m, n) array.
 */
export function retainedWeightDense(svd: DenseSvd, region: Region, fraction: number): Float64Array {
  const { m, n, k } = svd;
  const { start, count } = keptRange(region, k, fraction);
  const out = new Float64Array(m * n);
  for (let c = start; c < start + count; c++) {
    const s = svd.S[c];
    for (let i = 0; i < m; i++) {
      const us = svd.U[i * k + c] * s;
      if (us === 0) continue;
      const row = i * n;
      const vrow = c * n;
      for (let j = 0; j < n; j++) out[row + j] += us * svd.Vt[vrow + j];
    }
  }
  return out;
}
