/**
 * An exact (full-spectrum) thin SVD in float64 on the CPU, for `svd-bottom` (the r smallest singular
 * triplets need the whole spectrum), `svd.method: exact`, ablations, and the small dense step of the
 * randomised SVD.
 *
 * Method: with k = min(m, n) and X the orientation of A with k rows (A or Aᵀ), the Gram matrix G = X Xᵀ
 * (k × k) is formed in float64, its symmetric eigendecomposition G = P Λ Pᵀ gives one set of singular
 * vectors (P), and the other set comes from Y = Pᵀ X: σ_i = ‖Y_i‖ and the vector is Y_i / σ_i. Taking σ
 * from ‖Y_i‖ rather than √λ_i gives it to about float64 precision × κ instead of × κ².
 *
 * Accuracy: singular values carry a relative error of about 1e-16 · (σ_1 / σ_i)², so every σ_i above
 * about 3e-6 · σ_1 is exact to 1e-5 relative. Float32 weights themselves carry a rounding error of
 * about 6e-8 · σ_1, so singular values below that are noise of the checkpoint, not of this routine.
 * Directions whose σ falls below 1e-7 · σ_1 (numerical null space) are completed to an orthonormal basis.
 *
 * Cost: k²·L/2 (Gram) + k²·L (Y) multiply-adds + a k × k symmetric eigendecomposition (ml-matrix,
 * Householder tridiagonalisation + QL). Measured on one thread of a 2-core VM: 16 s for 1024 × 1024,
 * 29–37 s for 4096 × 1024 and 1024 × 4096 (about half of it in the eigendecomposition).
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { Rng } from '../rng';
import { canonicaliseSigns } from './dense';

/** A thin SVD A = U diag(S) Vᵀ with k = min(m, n), singular values in descending order. */
export interface DenseSvd {
  m: number;
  n: number;
  k: number;
  /** (m, k) row-major, orthonormal columns */
  U: Float64Array;
  /** (k) descending, ≥ 0 */
  S: Float64Array;
  /** (k, n) row-major, orthonormal rows */
  Vt: Float64Array;
}

/** Singular directions with σ below this fraction of σ_1 are completed to an orthonormal basis. */
const NULL_SPACE = 1e-7;

/**
 * Exact thin SVD of a row-major (m, n) matrix, signs canonicalised (see dense.ts: the largest-magnitude
 * entry of each column of U is positive).
 * @param a (m, n) row-major, float32 or float64
 */
export function exactSvd(a: ArrayLike<number>, m: number, n: number): DenseSvd {
  if (a.length !== m * n) throw new Error(`internal error: exactSvd got ${a.length} values for a ${m} × ${n} matrix`);
  const k = Math.min(m, n);
  const L = Math.max(m, n);
  // X: k rows of length L (A itself when m <= n, else Aᵀ).
  const x = new Float64Array(k * L);
  if (m <= n) {
    for (let i = 0; i < m * n; i++) x[i] = a[i];
  } else {
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) x[j * L + i] = a[i * n + j];
  }
  const gram = gramRows(x, k, L);
  const { values, vectors } = symmetricEigen(gram, k);
  // Y = Pᵀ X (k × L): row i is X's image of eigenvector i.
  const y = new Float64Array(k * L);
  for (let j = 0; j < k; j++) {
    const xRow = j * L;
    for (let i = 0; i < k; i++) {
      const p = vectors[j * k + i];
      if (p === 0) continue;
      const yRow = i * L;
      for (let t = 0; t < L; t++) y[yRow + t] += p * x[xRow + t];
    }
  }
  const s = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    let sq = 0;
    for (let t = 0; t < L; t++) sq += y[i * L + t] * y[i * L + t];
    s[i] = Math.sqrt(sq);
  }
  const scale = Math.max(s[0], Math.sqrt(Math.max(values[0], 0)));
  const rng = new Rng(0x5eed);
  for (let i = 0; i < k; i++) {
    const row = y.subarray(i * L, (i + 1) * L);
    if (s[i] > NULL_SPACE * scale && s[i] > 0) {
      const inv = 1 / s[i];
      for (let t = 0; t < L; t++) row[t] *= inv;
    } else {
      completeRow(y, i, L, rng);
    }
  }
  // Re-sort: refined σ may swap neighbours that were nearly tied in Λ.
  const order = Array.from({ length: k }, (_, i) => i).sort((p, q) => s[q] - s[p]);
  const S = Float64Array.from(order, (i) => s[i]);
  let U: Float64Array;
  let Vt: Float64Array;
  if (m <= n) {
    U = new Float64Array(m * k);
    for (let r = 0; r < m; r++) for (let c = 0; c < k; c++) U[r * k + c] = vectors[r * k + order[c]];
    Vt = new Float64Array(k * n);
    for (let c = 0; c < k; c++) Vt.set(y.subarray(order[c] * L, (order[c] + 1) * L), c * n);
  } else {
    U = new Float64Array(m * k);
    for (let c = 0; c < k; c++) {
      const src = order[c] * L;
      for (let r = 0; r < m; r++) U[r * k + c] = y[src + r];
    }
    Vt = new Float64Array(k * n);
    for (let c = 0; c < k; c++) for (let j = 0; j < n; j++) Vt[c * n + j] = vectors[j * k + order[c]];
  }
  canonicaliseSigns(U, Vt, m, k, n);
  return { m, n, k, U, S, Vt };
}

/** G = X Xᵀ for X (k, L) row-major; G (k, k) row-major, symmetric. */
function gramRows(x: Float64Array, k: number, L: number): Float64Array {
  const g = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    const ri = i * L;
    for (let j = 0; j <= i; j++) {
      const rj = j * L;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let t = 0;
      for (; t + 3 < L; t += 4) {
        s0 += x[ri + t] * x[rj + t];
        s1 += x[ri + t + 1] * x[rj + t + 1];
        s2 += x[ri + t + 2] * x[rj + t + 2];
        s3 += x[ri + t + 3] * x[rj + t + 3];
      }
      for (; t < L; t++) s0 += x[ri + t] * x[rj + t];
      const s = s0 + s1 + s2 + s3;
      g[i * k + j] = s;
      g[j * k + i] = s;
    }
  }
  return g;
}

/**
 * Symmetric eigendecomposition, eigenvalues in descending order.
 * @returns values (k), vectors (k, k) row-major with eigenvector i in column i
 */
function symmetricEigen(g: Float64Array, k: number): { values: Float64Array; vectors: Float64Array } {
  const rows: number[][] = [];
  for (let i = 0; i < k; i++) rows.push(Array.from(g.subarray(i * k, (i + 1) * k)));
  const evd = new EigenvalueDecomposition(new Matrix(rows), { assumeSymmetric: true });
  const lambda = evd.realEigenvalues;
  const vec = evd.eigenvectorMatrix;
  const order = Array.from({ length: k }, (_, i) => i).sort((p, q) => lambda[q] - lambda[p]);
  const values = Float64Array.from(order, (i) => lambda[i]);
  const vectors = new Float64Array(k * k);
  for (let r = 0; r < k; r++) {
    const vr = vec.getRow(r);
    for (let c = 0; c < k; c++) vectors[r * k + c] = vr[order[c]];
  }
  return { values, vectors };
}

/** Replaces row i of y (k rows of length L) by a unit vector orthogonal to rows 0..k except i. */
function completeRow(y: Float64Array, i: number, L: number, rng: Rng): void {
  const k = y.length / L;
  for (let attempt = 0; attempt < 10; attempt++) {
    const v = attempt === 0 ? Float64Array.from(y.subarray(i * L, (i + 1) * L)) : Float64Array.from({ length: L }, () => rng.normal());
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < k; j++) {
        if (j === i) continue;
        // Rows after i that are not normalised yet are skipped: they are completed in their turn.
        if (j > i) continue;
        let d = 0;
        for (let t = 0; t < L; t++) d += y[j * L + t] * v[t];
        for (let t = 0; t < L; t++) v[t] -= d * y[j * L + t];
      }
    }
    let nrm = 0;
    for (let t = 0; t < L; t++) nrm += v[t] * v[t];
    nrm = Math.sqrt(nrm);
    if (nrm > 1e-8) {
      for (let t = 0; t < L; t++) y[i * L + t] = v[t] / nrm;
      return;
    }
  }
  throw new Error('internal error: could not complete the singular basis');
}
