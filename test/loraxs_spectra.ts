/** Test helpers: matrices with a known spectrum, and float64 reference products. Not a test file itself. */
import { Rng } from '../sidecar/rng';
import { orthonormalColumns } from '../sidecar/loraxs/dense';

/** A random (rows, cols) matrix with orthonormal columns (QR of a Gaussian), row-major float64. */
export function randomOrthonormal(rows: number, cols: number, rng: Rng): Float64Array {
  const g = new Float64Array(rows * cols);
  for (let i = 0; i < g.length; i++) g[i] = rng.normal();
  const q = orthonormalColumns(g, rows, cols, rng);
  const out = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) for (let i = 0; i < rows; i++) out[i * cols + j] = q[j][i];
  return out;
}

/** A = U diag(s) Vᵀ (m × n) with random orthonormal U (m × k), V (n × k), k = s.length; float64 row-major. */
export function withSpectrum(m: number, n: number, s: number[], rng: Rng): Float64Array {
  const k = s.length;
  const u = randomOrthonormal(m, k, rng);
  const v = randomOrthonormal(n, k, rng);
  const a = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < k; t++) {
      const us = u[i * k + t] * s[t];
      for (let j = 0; j < n; j++) a[i * n + j] += us * v[j * k + t];
    }
  }
  return a;
}

/** (m, k) × (k, n) in float64, row-major. */
export function matmul64(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < k; t++) {
      const av = a[i * k + t];
      if (av === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] += av * b[t * n + j];
    }
  }
  return c;
}

/** Transpose of a row-major (m, n) matrix. */
export function transpose64(a: ArrayLike<number>, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}

/** ‖a − b‖_F */
export function frobDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

export function frob(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** max |QᵀQ − I| for Q (rows, cols) row-major with (supposedly) orthonormal columns. */
export function orthonormalityError(q: ArrayLike<number>, rows: number, cols: number): number {
  let worst = 0;
  for (let a = 0; a < cols; a++) {
    for (let b = 0; b <= a; b++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += q[i * cols + a] * q[i * cols + b];
      worst = Math.max(worst, Math.abs(d - (a === b ? 1 : 0)));
    }
  }
  return worst;
}
