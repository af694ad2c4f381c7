/**
 * ΔW subspace projection (appendix E, Table 9): with the base weight's full SVD W = U Σ Vᵀ (U m × m,
 * V n × n), ΔW = U C Vᵀ where C = Uᵀ ΔW V (m × n). Keeping a fraction f of the singular directions on
 * both sides, round(f · m) columns of U and round(f · n) columns of V from the top, middle or bottom,
 * gives ΔW_approx = U_S C_{S,T} V_Tᵀ = (U_S U_Sᵀ) ΔW (V_T V_Tᵀ). On the longer side of a rectangular W the
 * directions past min(m, n) (σ = 0) sit at the bottom, in the deterministic order of
 * orthonormal_completion.ts. f = 1 gives ΔW back; f = 0 gives 0.
 */
import * as tf from '../backend/tf';
import type { DenseSvd } from '../loraxs/exact_svd';
import { completeBasis } from './orthonormal_completion';
import { keptRange, type Region } from './spectrum_regions';

/** The full orthonormal bases of a weight's SVD as float32 tensors. */
export interface FullBases {
  m: number;
  n: number;
  /** (m, m): left singular vectors in descending σ, then the completion */
  U: tf.Tensor2D;
  /** (n, n): right singular vectors as columns, in descending σ, then the completion */
  V: tf.Tensor2D;
  dispose(): void;
}

/** [thin (L, k) | completion (L, L − k)] as one (L, L) row-major array. */
function fullBasis(thin: Float64Array, L: number, k: number): Float32Array {
  const comp = completeBasis(thin, L, k);
  const rest = L - k;
  const out = new Float32Array(L * L);
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < k; j++) out[i * L + j] = thin[i * k + j];
    for (let j = 0; j < rest; j++) out[i * L + k + j] = comp[i * rest + j];
  }
  return out;
}

/** Full bases from a thin SVD (completing the longer side). */
export function fullBases(svd: DenseSvd): FullBases {
  const { m, n, k } = svd;
  // V thin (n, k) row-major = Vtᵀ.
  const vThin = new Float64Array(n * k);
  for (let c = 0; c < k; c++) for (let j = 0; j < n; j++) vThin[j * k + c] = svd.Vt[c * n + j];
  const U = tf.tensor2d(fullBasis(svd.U, m, k), [m, m]);
  const V = tf.tensor2d(fullBasis(vThin, n, k), [n, n]);
  return { m, n, U, V, dispose: () => tf.dispose([U, V]) };
}

/**
 * ΔW projected onto the kept directions on both sides.
 * @param delta (m, n)
 * @returns (m, n)
 */
export function projectDelta(delta: tf.Tensor2D, bases: FullBases, region: Region, fraction: number): tf.Tensor2D {
  return tf.tidy(() => {
    const { m, n } = bases;
    if (delta.shape[0] !== m || delta.shape[1] !== n) {
      throw new Error(`internal error: projectDelta: ΔW is [${delta.shape.join(', ')}], the bases are for ${m} × ${n}`);
    }
    const left = keptRange(region, m, fraction);
    const right = keptRange(region, n, fraction);
    if (left.count === 0 || right.count === 0) return tf.zeros([m, n]) as tf.Tensor2D;
    const Us = tf.slice(bases.U, [0, left.start], [m, left.count]);
    const Vt = tf.slice(bases.V, [0, right.start], [n, right.count]);
    const C = tf.matMul(tf.matMul(Us, delta, true, false), Vt); // (|S|, |T|)
    return tf.matMul(tf.matMul(Us, C), Vt, false, true) as tf.Tensor2D;
  });
}
