/**
 * A proposal measured by the SVD benchmark, not used by the engine: sidecar/loraxs/svd.ts's randomized
 * SVD with its two transposed products (Wᵀ Q as tf.matMul(W, Q, true, false)) replaced by plain ones
 * (Zᵀ = Qᵀ W with Qᵀ laid out in JavaScript, where it costs nothing). In a standalone test on
 * tfjs-backend-wasm a matMul with a transposed 768 × 3072 operand took 200–450 ms against 6–15 ms for the
 * plain product; inside the benchmark the two SVDs took the same time, so the gain is not established.
 * The algorithm and its result are otherwise the same (up to float32 summation order).
 */
import * as tf from '../sidecar/backend/tf';
import { Rng } from '../sidecar/rng';
import { columnsToRowMajor32, orthonormalColumns } from '../sidecar/loraxs/dense';
import { readBack, svdFromRange, type RandomizedSvdOptions, type TruncatedSvd } from '../sidecar/loraxs/svd';

/** Columns (l arrays of length m) as a row-major (l, m) Float32Array: Qᵀ. */
function columnsAsRows32(cols: Float64Array[], m: number): Float32Array {
  const out = new Float32Array(cols.length * m);
  cols.forEach((c, j) => out.set(c, j * m));
  return out;
}

/** Zᵀ = Qᵀ W (l, n) row-major, returned as Z (n, l) row-major. */
function wtq(W: tf.Tensor2D, qCols: Float64Array[], m: number, n: number): Float32Array {
  const l = qCols.length;
  const zt = readBack(() => tf.matMul(tf.tensor2d(columnsAsRows32(qCols, m), [l, m]), W));
  const z = new Float32Array(n * l);
  for (let j = 0; j < l; j++) for (let i = 0; i < n; i++) z[i * l + j] = zt[j * n + i];
  return z;
}

/** randomizedSvd (sidecar/loraxs/svd.ts) without transposed matMuls. @param W (m, n) */
export function randomizedSvdNoTranspose(W: tf.Tensor2D, rank: number, opts: RandomizedSvdOptions, rng: Rng): TruncatedSvd {
  const [m, n] = W.shape;
  const l = Math.min(rank + Math.max(0, opts.oversamples), Math.min(m, n));
  const omega = rng.normalArray(n * l);
  let y = readBack(() => tf.matMul(W, tf.tensor2d(omega, [n, l])));
  let qCols = orthonormalColumns(y, m, l, rng);
  for (let it = 0; it < opts.powerIters; it++) {
    const qz = orthonormalColumns(wtq(W, qCols, m, n), n, l, rng);
    y = readBack(() => tf.matMul(W, tf.tensor2d(columnsToRowMajor32(qz, n), [n, l])));
    qCols = orthonormalColumns(y, m, l, rng);
  }
  const bt = wtq(W, qCols, m, n); // Bᵀ = Wᵀ Q (n, l)
  return svdFromRange(columnsToRowMajor32(qCols, m), bt, m, n, l, rank);
}
