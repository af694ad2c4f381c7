/**
 * The randomised and the exact SVD against matrices with a known spectrum (U, V random orthonormal from
 * Gram-Schmidt of Gaussians, chosen singular values), square and rectangular both ways.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { Rng } from '../sidecar/rng';
import { exactSvd } from '../sidecar/loraxs/exact_svd';
import { randomizedSvd, truncateExact } from '../sidecar/loraxs/svd';
import { frob, frobDiff, matmul64, orthonormalityError, transpose64, withSpectrum } from './loraxs_spectra';

before(async () => {
  await initBackend();
});

const SHAPES: Array<[number, number]> = [[96, 96], [160, 64], [64, 160]];

function decaying(k: number): number[] {
  return Array.from({ length: k }, (_, i) => 10 * 0.8 ** i);
}

function reconstruct(U: ArrayLike<number>, S: ArrayLike<number>, Vt: ArrayLike<number>, m: number, r: number, n: number): Float64Array {
  const us = new Float64Array(m * r);
  for (let i = 0; i < m; i++) for (let c = 0; c < r; c++) us[i * r + c] = U[i * r + c] * S[c];
  return matmul64(us, Vt, m, r, n);
}

function assertRelClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, what: string): void {
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / Math.abs(expected[i]);
    assert.ok(err <= rel, `${what}[${i}]: expected ${expected[i]}, got ${actual[i]} (relative error ${err.toExponential(2)} > ${rel})`);
  }
}

for (const [m, n] of SHAPES) {
  test(`exact SVD of ${m}×${n}: every singular value within 1e-5 relative, orthonormal factors, reconstruction`, () => {
    const k = Math.min(m, n);
    // A spectrum over 4 decades plus a cluster of near-ties.
    const s = Array.from({ length: k }, (_, i) => (i % 7 === 3 ? 5 : 100 * 10 ** (-4 * i / (k - 1))));
    s.sort((a, b) => b - a);
    const a = withSpectrum(m, n, s, new Rng(1));
    const svd = exactSvd(a, m, n);
    assertRelClose(svd.S, s, 1e-5, 'S');
    // The side derived from Y = Pᵀ X loses orthogonality like eps · κ² (κ = 1e4 here): about 1e-9.
    assert.ok(orthonormalityError(svd.U, m, k) < 1e-7, `U orthonormality ${orthonormalityError(svd.U, m, k)}`);
    assert.ok(orthonormalityError(transpose64(svd.Vt, k, n), n, k) < 1e-7, `V orthonormality ${orthonormalityError(transpose64(svd.Vt, k, n), n, k)}`);
    const rel = frobDiff(reconstruct(svd.U, svd.S, svd.Vt, m, k, n), a) / frob(a);
    assert.ok(rel < 1e-12, `reconstruction error ${rel}`);
    // Bottom singular vectors: A v_i = σ_i u_i for the smallest pair too.
    const bottom = truncateExact(svd, 2, true);
    assertRelClose(bottom.S, s.slice(k - 2), 1e-5, 'bottom S');
  });

  test(`randomised SVD of ${m}×${n}, decaying spectrum: top-8 within 1e-4 relative, orthonormal, near-optimal error`, () => {
    const k = Math.min(m, n);
    const s = decaying(k);
    const a = withSpectrum(m, n, s, new Rng(2));
    const W = tf.tensor2d(Float32Array.from(a), [m, n]);
    try {
      const r = 8;
      const svd = randomizedSvd(W, r, { oversamples: 10, powerIters: 4 }, new Rng(7));
      assertRelClose(svd.S, s.slice(0, r), 1e-4, 'S');
      assert.ok(orthonormalityError(svd.U, m, r) < 1e-5, `U orthonormality ${orthonormalityError(svd.U, m, r)}`);
      assert.ok(orthonormalityError(transpose64(svd.Vt, r, n), n, r) < 1e-5, 'V orthonormality');
      // Eckart–Young: the best rank-r error is sqrt(Σ_{i>r} σ_i²).
      const optimal = Math.sqrt(s.slice(r).reduce((acc, v) => acc + v * v, 0));
      const err = frobDiff(reconstruct(svd.U, svd.S, svd.Vt, m, r, n), a);
      assert.ok(Math.abs(err - optimal) / optimal < 1e-4, `rank-${r} error ${err}, optimal ${optimal}`);
      // The singular vectors agree with the exact SVD's (signs canonicalised the same way).
      const exact = truncateExact(exactSvd(Float32Array.from(a), m, n), r);
      const du = frobDiff(svd.U, exact.U) / Math.sqrt(r);
      assert.ok(du < 1e-3, `U differs from the exact SVD's by ${du} per column`);
    } finally {
      W.dispose();
    }
  });
}

test('randomised SVD, flat spectrum of rank 40 (any subspace is optimal): values and error exact', () => {
  const [m, n, k, r] = [120, 90, 40, 12];
  const a = withSpectrum(m, n, Array(k).fill(3), new Rng(3));
  const W = tf.tensor2d(Float32Array.from(a), [m, n]);
  try {
    const svd = randomizedSvd(W, r, { oversamples: 10, powerIters: 2 }, new Rng(4));
    assertRelClose(svd.S, Array(r).fill(3), 1e-4, 'S');
    const err = frobDiff(reconstruct(svd.U, svd.S, svd.Vt, m, r, n), a);
    const optimal = 3 * Math.sqrt(k - r);
    assert.ok(Math.abs(err - optimal) / optimal < 1e-4, `error ${err}, optimal ${optimal}`);
  } finally {
    W.dispose();
  }
});

test('randomised SVD is deterministic for a seed, and rank = min(m, n) works', () => {
  const [m, n] = [50, 30];
  const a = withSpectrum(m, n, decaying(30), new Rng(5));
  const W = tf.tensor2d(Float32Array.from(a), [m, n]);
  try {
    const one = randomizedSvd(W, 6, { oversamples: 10, powerIters: 4 }, new Rng(11));
    const two = randomizedSvd(W, 6, { oversamples: 10, powerIters: 4 }, new Rng(11));
    assert.deepEqual(one.U, two.U);
    assert.deepEqual(one.S, two.S);
    assert.deepEqual(one.Vt, two.Vt);
    const full = randomizedSvd(W, 30, { oversamples: 10, powerIters: 0 }, new Rng(1));
    assertRelClose(full.S, decaying(30), 1e-4, 'full-rank S');
  } finally {
    W.dispose();
  }
});

test('exact SVD of a rank-deficient matrix completes an orthonormal basis', () => {
  const [m, n] = [40, 25];
  const a = withSpectrum(m, n, [4, 3, 2], new Rng(6));
  const svd = exactSvd(a, m, n);
  assertRelClose(svd.S.subarray(0, 3), [4, 3, 2], 1e-6, 'S');
  for (let i = 3; i < 25; i++) assert.ok(svd.S[i] < 1e-6, `σ_${i} = ${svd.S[i]} should be ~0`);
  assert.ok(orthonormalityError(svd.U, m, 25) < 1e-8, `U orthonormality ${orthonormalityError(svd.U, m, 25)}`);
  assert.ok(orthonormalityError(transpose64(svd.Vt, 25, n), n, 25) < 1e-8, 'V orthonormality');
});
