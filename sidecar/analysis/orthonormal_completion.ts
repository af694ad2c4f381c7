/**
 * Completing orthonormal columns to a full orthonormal basis: given Q1 (L, k) with orthonormal columns,
 * the (L, L − k) columns Q2 with [Q1 Q2] orthogonal. Deterministic: Q2 = the last L − k columns of the
 * Householder QR of Q1 (Q = H_0 H_1 … H_{k−1}, Q2 = Q e_j for j ≥ k). Cost about 2 k L (L − k) flops.
 *
 * The full U and V of a rectangular W need it: the thin SVD gives min(m, n) directions on each side, and
 * the longer side's remaining directions (those W maps to or from zero) are this completion.
 */

/**
 * @param q1 (L, k) row-major, orthonormal columns
 * @returns (L, L − k) row-major, orthonormal columns orthogonal to q1's
 */
export function completeBasis(q1: Float64Array, L: number, k: number): Float64Array {
  if (q1.length !== L * k) throw new Error(`internal error: completeBasis got ${q1.length} values for ${L} × ${k}`);
  const rest = L - k;
  const out = new Float64Array(L * rest);
  if (rest === 0) return out;
  // Column-major working copy: a[j * L + i] = q1[i, j].
  const a = new Float64Array(L * k);
  for (let i = 0; i < L; i++) for (let j = 0; j < k; j++) a[j * L + i] = q1[i * k + j];
  // Householder vectors v_j (unit length, nonzero from index j), stored in place of column j.
  const vs: Float64Array[] = [];
  for (let j = 0; j < k; j++) {
    const col = a.subarray(j * L, (j + 1) * L);
    let norm = 0;
    for (let i = j; i < L; i++) norm += col[i] * col[i];
    norm = Math.sqrt(norm);
    const v = new Float64Array(L);
    for (let i = j; i < L; i++) v[i] = col[i];
    v[j] += col[j] >= 0 ? norm : -norm;
    let vn = 0;
    for (let i = j; i < L; i++) vn += v[i] * v[i];
    vn = Math.sqrt(vn);
    if (vn > 0) for (let i = j; i < L; i++) v[i] /= vn;
    vs.push(v);
    // Apply H_j = I − 2 v vᵀ to the remaining columns.
    for (let c = j; c < k; c++) {
      const x = a.subarray(c * L, (c + 1) * L);
      let d = 0;
      for (let i = j; i < L; i++) d += v[i] * x[i];
      d *= 2;
      for (let i = j; i < L; i++) x[i] -= d * v[i];
    }
  }
  const y = new Float64Array(L);
  for (let c = 0; c < rest; c++) {
    y.fill(0);
    y[k + c] = 1;
    for (let j = k - 1; j >= 0; j--) {
      const v = vs[j];
      let d = 0;
      for (let i = j; i < L; i++) d += v[i] * y[i];
      d *= 2;
      if (d !== 0) for (let i = j; i < L; i++) y[i] -= d * v[i];
    }
    for (let i = 0; i < L; i++) out[i * rest + c] = y[i];
  }
  return out;
}
