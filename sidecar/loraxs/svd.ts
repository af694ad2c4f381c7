/**
 * Randomised truncated SVD (Halko, Martinsson & Tropp 2011, algorithms 4.4 + 5.1): the top `rank`
 * singular triplets of W (m × n).
 *
 *   Ω ~ N(0, 1) (n × l), l = min(rank + oversamples, min(m, n)), drawn from the Rng (deterministic per seed)
 *   Q = orth(W Ω)                                        range finder
 *   repeat powerIters times: Q = orth(W orth(Wᵀ Q))      subspace iteration, re-orthonormalised each half step
 *   B = Qᵀ W (l × n);  B = Ũ Σ Vᵀ exactly;  U = Q Ũ
 *
 * The large products (W Ω, Wᵀ Q, W Q) run on the TensorFlow.js backend in float32; the thin
 * orthonormalisations (Gram-Schmidt twice, m × l) and the SVD of the small B (exact_svd.ts) run on the CPU
 * in float64. Signs are canonicalised: the largest-|value| entry of each column of U is positive.
 *
 * The result is returned as Float32Arrays (U (m, r), S (r), Vt (r, n), row-major); the caller uploads
 * what it keeps.
 */
import * as tf from '../backend/tf';
import { Rng } from '../rng';
import { canonicaliseSigns, columnsToRowMajor32, orthonormalColumns } from './dense';
import { exactSvd, type DenseSvd } from './exact_svd';

/** A truncated SVD W ≈ U diag(S) Vt. */
export interface TruncatedSvd {
  m: number;
  n: number;
  rank: number;
  /** (m, rank) row-major */
  U: Float32Array;
  /** (rank) descending */
  S: Float32Array;
  /** (rank, n) row-major */
  Vt: Float32Array;
}

export interface RandomizedSvdOptions {
  /** Extra random directions beyond the rank (default 10). */
  oversamples: number;
  /** Subspace (power) iterations (default 4). */
  powerIters: number;
}

export const DEFAULT_RANDOMIZED: RandomizedSvdOptions = { oversamples: 10, powerIters: 7 };

/**
 * Runs `f` in a tidy scope and reads its result back. (Returning the Float32Array from tf.tidy instead
 * would make tfjs walk every element of it looking for tensors: that walk took 4.4 s of 8.5 s in a
 * profile of the randomised SVD.)
 */
export function readBack(f: () => tf.Tensor): Float32Array {
  const t = tf.tidy(f);
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}

/**
 * The top `rank` singular triplets of W by the randomised algorithm.
 * @param W (m, n)
 */
export function randomizedSvd(W: tf.Tensor2D, rank: number, opts: RandomizedSvdOptions, rng: Rng): TruncatedSvd {
  const [m, n] = W.shape;
  const kmax = Math.min(m, n);
  if (!(Number.isInteger(rank) && rank >= 1 && rank <= kmax)) {
    throw new Error(`internal error: randomizedSvd rank ${rank} outside 1..${kmax} for a ${m} × ${n} matrix`);
  }
  const l = Math.min(rank + Math.max(0, opts.oversamples), kmax);
  const omega = rng.normalArray(n * l);
  // Y = W Ω (m × l)
  let y = readBack(() => tf.matMul(W, tf.tensor2d(omega, [n, l])));
  let q = columnsToRowMajor32(orthonormalColumns(y, m, l, rng), m);
  for (let it = 0; it < opts.powerIters; it++) {
    // Z = Wᵀ Q (n × l), orthonormalised, then Y = W Z (m × l), orthonormalised.
    const z = readBack(() => tf.matMul(W, tf.tensor2d(q, [m, l]), true, false));
    const qz = columnsToRowMajor32(orthonormalColumns(z, n, l, rng), n);
    y = readBack(() => tf.matMul(W, tf.tensor2d(qz, [n, l])));
    q = columnsToRowMajor32(orthonormalColumns(y, m, l, rng), m);
  }
  // Bᵀ = Wᵀ Q (n × l)
  const bt = readBack(() => tf.matMul(W, tf.tensor2d(q, [m, l]), true, false));
  return svdFromRange(q, bt, m, n, l, rank);
}

/**
 * The last step of the randomised SVD, from an orthonormal basis Q of W's range and Bᵀ = Wᵀ Q: the exact
 * SVD of the small B = Qᵀ W (l × n) = Ũ Σ Vᵀ, then U = Q Ũ_r, signs canonicalised.
 * @param q (m, l) row-major
 * @param bt (n, l) row-major
 */
export function svdFromRange(q: Float32Array, bt: Float32Array, m: number, n: number, l: number, rank: number): TruncatedSvd {
  const b = new Float64Array(l * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < l; j++) b[j * n + i] = bt[i * l + j];
  const small: DenseSvd = exactSvd(b, l, n);
  // U = Q Ũ_r (m × r), in float64 from the float32 Q.
  const U = new Float64Array(m * rank);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < l; t++) {
      const qv = q[i * l + t];
      if (qv === 0) continue;
      for (let c = 0; c < rank; c++) U[i * rank + c] += qv * small.U[t * small.k + c];
    }
  }
  const Vt = small.Vt.slice(0, rank * n);
  canonicaliseSigns(U, Vt, m, rank, n);
  return { m, n, rank, U: Float32Array.from(U), S: Float32Array.from(small.S.subarray(0, rank)), Vt: Float32Array.from(Vt) };
}

/** The top `rank` (or, with `bottom`, the `rank` smallest) triplets of an exact SVD, as float32. */
export function truncateExact(svd: DenseSvd, rank: number, bottom = false): TruncatedSvd {
  const { m, n, k } = svd;
  if (!(Number.isInteger(rank) && rank >= 1 && rank <= k)) throw new Error(`internal error: rank ${rank} outside 1..${k}`);
  const first = bottom ? k - rank : 0;
  const U = new Float32Array(m * rank);
  for (let i = 0; i < m; i++) for (let c = 0; c < rank; c++) U[i * rank + c] = svd.U[i * k + first + c];
  const S = Float32Array.from(svd.S.subarray(first, first + rank));
  const Vt = Float32Array.from(svd.Vt.subarray(first * n, (first + rank) * n));
  return { m, n, rank, U, S, Vt };
}
