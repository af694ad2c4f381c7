/**
 * Small dense float64 helpers for the SVDs: orthonormalising the columns of a tall matrix and the sign
 * convention for singular pairs. Everything here runs on the CPU in plain JavaScript; the matrices it sees
 * are thin (m × l with l = rank + oversamples) or at most min(m, n) square.
 */
import { Rng } from '../rng';

/** An orthonormalised column is replaced when its norm falls below this fraction of its norm before. */
const DEGENERATE = 1e-10;

/**
 * Orthonormalises the columns of a row-major (m, l) matrix with classical Gram-Schmidt applied twice
 * ("twice is enough": orthogonal to float64 precision). A column that lies (numerically) in the span of the
 * previous ones is replaced by a random direction orthogonal to them, so the result always has l
 * orthonormal columns (needed when W has rank below l).
 * @param a (m, l) row-major
 * @returns columns: l Float64Arrays of length m (column-major), orthonormal
 */
export function orthonormalColumns(a: ArrayLike<number>, m: number, l: number, rng: Rng): Float64Array[] {
  if (l > m) throw new Error(`internal error: cannot orthonormalise ${l} columns of length ${m}`);
  const cols: Float64Array[] = [];
  for (let j = 0; j < l; j++) {
    const c = new Float64Array(m);
    for (let i = 0; i < m; i++) c[i] = a[i * l + j];
    cols.push(c);
  }
  for (let j = 0; j < l; j++) {
    let c = cols[j];
    const before = norm(c);
    let after = before > 0 ? orthogonalise(c, cols, j) : 0;
    for (let attempt = 0; !(after > DEGENERATE * before && after > 0); attempt++) {
      if (attempt > 8) throw new Error('internal error: could not complete an orthonormal basis');
      c = Float64Array.from({ length: m }, () => rng.normal());
      cols[j] = c;
      const b = norm(c);
      after = orthogonalise(c, cols, j);
      if (after > DEGENERATE * b) break;
    }
    const inv = 1 / after;
    for (let i = 0; i < m; i++) c[i] *= inv;
  }
  return cols;
}

/** Removes from c its components along basis[0..count) twice; returns the remaining norm. */
function orthogonalise(c: Float64Array, basis: Float64Array[], count: number): number {
  for (let pass = 0; pass < 2; pass++) {
    for (let k = 0; k < count; k++) {
      const q = basis[k];
      let d = 0;
      for (let i = 0; i < c.length; i++) d += q[i] * c[i];
      for (let i = 0; i < c.length; i++) c[i] -= d * q[i];
    }
  }
  return norm(c);
}

export function norm(c: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < c.length; i++) s += c[i] * c[i];
  return Math.sqrt(s);
}

/** Column-major columns -> a row-major (m, l) Float32Array (for upload to the backend). */
export function columnsToRowMajor32(cols: Float64Array[], m: number): Float32Array {
  const l = cols.length;
  const out = new Float32Array(m * l);
  for (let j = 0; j < l; j++) {
    const c = cols[j];
    for (let i = 0; i < m; i++) out[i * l + j] = c[i];
  }
  return out;
}

/**
 * The sign convention for singular pairs: for each j, the entry of U's column j with the largest absolute
 * value (the first one on ties) is made positive, flipping U's column j and Vᵀ's row j together (so
 * U Σ Vᵀ is unchanged). This makes the factors independent of the arbitrary signs an SVD routine returns,
 * as long as the singular values are distinct.
 * @param u (m, k) row-major, modified in place
 * @param vt (k, n) row-major, modified in place
 */
export function canonicaliseSigns(u: Float64Array | Float32Array, vt: Float64Array | Float32Array, m: number, k: number, n: number): void {
  for (let j = 0; j < k; j++) {
    let best = -1;
    let bestAbs = -1;
    for (let i = 0; i < m; i++) {
      const v = Math.abs(u[i * k + j]);
      if (v > bestAbs) {
        bestAbs = v;
        best = i;
      }
    }
    if (best >= 0 && u[best * k + j] < 0) {
      for (let i = 0; i < m; i++) u[i * k + j] = -u[i * k + j];
      for (let i = 0; i < n; i++) vt[j * n + i] = -vt[j * n + i];
    }
  }
}
