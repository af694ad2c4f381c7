/**
 * An exact SVD held as float32 tensors for fast reconstructions on the backend: the partial products
 * U[:, S] diag(σ_S) Vt[S, :] of the retention ablation.
 */
import * as tf from '../backend/tf';
import type { DenseSvd } from '../loraxs/exact_svd';
import type { KeptRange } from './spectrum_regions';

export interface SvdTensors {
  m: number;
  n: number;
  k: number;
  /** (m, k) */
  U: tf.Tensor2D;
  /** (k) */
  S: tf.Tensor1D;
  /** (k, n) */
  Vt: tf.Tensor2D;
  dispose(): void;
}

export function svdTensors(svd: DenseSvd): SvdTensors {
  const U = tf.tensor2d(Float32Array.from(svd.U), [svd.m, svd.k]);
  const S = tf.tensor1d(Float32Array.from(svd.S));
  const Vt = tf.tensor2d(Float32Array.from(svd.Vt), [svd.k, svd.n]);
  return { m: svd.m, n: svd.n, k: svd.k, U, S, Vt, dispose: () => tf.dispose([U, S, Vt]) };
}

/**
 * Σ_{i ∈ range} σ_i u_i v_iᵀ: W with only the singular values in `range` kept.
 * @returns (m, n); zeros when the range is empty
 */
export function partialReconstruction(t: SvdTensors, range: KeptRange): tf.Tensor2D {
  return tf.tidy(() => {
    if (range.count === 0) return tf.zeros([t.m, t.n]) as tf.Tensor2D;
    const u = tf.slice(t.U, [0, range.start], [t.m, range.count]);
    const s = tf.slice(t.S, [range.start], [range.count]);
    const vt = tf.slice(t.Vt, [range.start, 0], [range.count, t.n]);
    return tf.matMul(tf.mul(u, s), vt) as tf.Tensor2D;
  });
}
