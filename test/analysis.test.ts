/**
 * The numerics of the singular-value analyses, against closed forms: exact singular values of matrices
 * built with a known spectrum (square and rectangular, through the on-disk cache); retention keeps exactly
 * the chosen triplets; the completed bases are orthogonal; projecting ΔW onto the full subspaces gives ΔW
 * back, a ΔW inside the kept subspaces is kept and one outside them is removed.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { Rng } from '../sidecar/rng';
import { keptRange } from '../sidecar/analysis/spectrum_regions';
import { cachedExactSvd } from '../sidecar/analysis/exact_svd_cache';
import { svdTensors } from '../sidecar/analysis/svd_tensors';
import { retainedWeight, retainedWeightDense } from '../sidecar/analysis/retention';
import { completeBasis } from '../sidecar/analysis/orthonormal_completion';
import { fullBases, projectDelta } from '../sidecar/analysis/delta_projection';
import { energyShare } from '../sidecar/analysis/spectra';
import { layerOf, groupModules } from '../sidecar/analysis/module_groups';
import { median, stdDev } from '../sidecar/analysis/init_comparison';
import { toCsv } from '../sidecar/analysis/ablation_results';
import { tempDir } from './paths';

/** (L, c) row-major with orthonormal columns: modified Gram–Schmidt (twice) of Gaussian columns. */
function randomOrthonormal(L: number, c: number, rng: Rng): Float64Array {
  const cols: Float64Array[] = [];
  for (let j = 0; j < c; j++) {
    const v = Float64Array.from({ length: L }, () => rng.normal());
    for (let pass = 0; pass < 2; pass++) {
      for (const q of cols) {
        let d = 0;
        for (let i = 0; i < L; i++) d += q[i] * v[i];
        for (let i = 0; i < L; i++) v[i] -= d * q[i];
      }
    }
    const n = Math.hypot(...v);
    cols.push(v.map((x) => x / n));
  }
  const out = new Float64Array(L * c);
  for (let i = 0; i < L; i++) for (let j = 0; j < c; j++) out[i * c + j] = cols[j][i];
  return out;
}

/** A = P diag(s) Qᵀ, (m, n) row-major float64, with P (m, k) and Q (n, k). */
function withSpectrum(P: Float64Array, s: number[], Q: Float64Array, m: number, n: number): Float64Array {
  const k = s.length;
  const a = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let x = 0;
    for (let c = 0; c < k; c++) x += P[i * k + c] * s[c] * Q[j * k + c];
    a[i * n + j] = x;
  }
  return a;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test('kept ranges: top, bottom, and middle starting at floor((k - count) / 2)', () => {
  assert.deepEqual(keptRange('top', 10, 0.3), { start: 0, count: 3 });
  assert.deepEqual(keptRange('bottom', 10, 0.3), { start: 7, count: 3 });
  assert.deepEqual(keptRange('middle', 10, 0.3), { start: 3, count: 3 });
  assert.deepEqual(keptRange('middle', 10, 0.2), { start: 4, count: 2 });
  assert.deepEqual(keptRange('middle', 7, 0.25), { start: 2, count: 2 }); // round(1.75) = 2, floor(5 / 2) = 2
  assert.deepEqual(keptRange('top', 32, 0), { start: 0, count: 0 });
  assert.deepEqual(keptRange('bottom', 32, 1), { start: 0, count: 32 });
});

for (const [m, n] of [[24, 24], [40, 16], [16, 40]]) {
  test(`exact singular values of a ${m} × ${n} matrix with a known spectrum within 1e-5, cached on disk`, () => {
    const rng = new Rng(m * 100 + n);
    const k = Math.min(m, n);
    // Spread over 4 decades, with a near-tie, as weight spectra have.
    const s = Array.from({ length: k }, (_, i) => 10 * Math.pow(1e-4, i / (k - 1)));
    s[3] = s[2] * (1 - 1e-6);
    const a = withSpectrum(randomOrthonormal(m, k, rng), s, randomOrthonormal(n, k, rng), m, n);
    const dir = tempDir('loraxs-svd-cache-');
    const first = cachedExactSvd(Float32Array.from(a), m, n, 'test.weight', dir);
    assert.equal(first.cached, false);
    // The float32 rounding of A moves σ_i by at most ‖E‖₂ ≤ ‖E‖_F ≈ 6e-8 · ‖A‖_F.
    const err = maxAbsDiff(first.svd.S, s);
    assert.ok(err < 1e-5, `max |σ − σ_true| = ${err}`);
    const again = cachedExactSvd(Float32Array.from(a), m, n, 'test.weight', dir);
    assert.equal(again.cached, true);
    assert.deepEqual(Array.from(again.svd.S), Array.from(first.svd.S));
    assert.equal(maxAbsDiff(again.svd.U, first.svd.U), 0);
    assert.equal(maxAbsDiff(again.svd.Vt, first.svd.Vt), 0);
  });
}

test('retention keeps exactly the chosen singular triplets (float32 reconstruction vs the closed form, 1e-5)', async () => {
  await initBackend();
  const m = 20, n = 12, k = 12;
  const rng = new Rng(5);
  const P = randomOrthonormal(m, k, rng);
  const Q = randomOrthonormal(n, k, rng);
  const s = Array.from({ length: k }, (_, i) => 3 - 0.2 * i);
  const a = withSpectrum(P, s, Q, m, n);
  const { svd } = cachedExactSvd(Float32Array.from(a), m, n, 'x', null);
  const t = svdTensors(svd);
  const W = tf.tensor2d(Float32Array.from(a), [m, n]);
  try {
    for (const region of ['top', 'middle', 'bottom'] as const) {
      for (const f of [0.25, 0.5, 0.75]) {
        const { start, count } = keptRange(region, k, f);
        const keep = s.map((x, i) => (i >= start && i < start + count ? x : 0));
        const expected = withSpectrum(P, keep, Q, m, n);
        const got = retainedWeight(W, t, region, f);
        const e1 = maxAbsDiff(got.dataSync(), expected);
        got.dispose();
        assert.ok(e1 < 1e-5, `${region} ${f}: tf reconstruction off by ${e1}`);
        const e2 = maxAbsDiff(retainedWeightDense(svd, region, f), expected);
        assert.ok(e2 < 1e-5, `${region} ${f}: dense reconstruction off by ${e2}`);
      }
    }
    assert.equal(retainedWeight(W, t, 'bottom', 1), W, 'fraction 1 must be the original tensor itself');
    const zero = retainedWeight(W, t, 'top', 0);
    assert.equal(Math.max(...Array.from(zero.dataSync(), Math.abs)), 0);
    zero.dispose();
  } finally {
    W.dispose();
    t.dispose();
  }
});

test('the completion of orthonormal columns is orthonormal and orthogonal to them', () => {
  const L = 30, k = 11;
  const q1 = randomOrthonormal(L, k, new Rng(9));
  const q2 = completeBasis(q1, L, k);
  const full = new Float64Array(L * L);
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < k; j++) full[i * L + j] = q1[i * k + j];
    for (let j = 0; j < L - k; j++) full[i * L + k + j] = q2[i * (L - k) + j];
  }
  let worst = 0;
  for (let a = 0; a < L; a++) for (let b = 0; b < L; b++) {
    let d = 0;
    for (let i = 0; i < L; i++) d += full[i * L + a] * full[i * L + b];
    worst = Math.max(worst, Math.abs(d - (a === b ? 1 : 0)));
  }
  assert.ok(worst < 1e-12, `|QᵀQ − I| = ${worst}`);
});

for (const [m, n] of [[16, 16], [28, 12], [12, 28]]) {
  test(`ΔW projected onto the full subspaces of a ${m} × ${n} W comes back; inside kept, outside removed`, async () => {
    await initBackend();
    const rng = new Rng(m + 7 * n);
    const Wd = Float32Array.from({ length: m * n }, () => rng.normal());
    const { svd } = cachedExactSvd(Wd, m, n, 'w', null);
    const bases = fullBases(svd);
    const delta = tf.tensor2d(Float32Array.from({ length: m * n }, () => rng.normal() * 0.01), [m, n]);
    try {
      const back = projectDelta(delta, bases, 'top', 1);
      const scale = Math.max(...Array.from(delta.dataSync(), Math.abs));
      const e = maxAbsDiff(back.dataSync(), delta.dataSync());
      back.dispose();
      assert.ok(e < 1e-5 * scale * 10, `f = 1: |ΔW_approx − ΔW| = ${e} (scale ${scale})`);
      const zero = projectDelta(delta, bases, 'middle', 0);
      assert.equal(Math.max(...Array.from(zero.dataSync(), Math.abs)), 0);
      zero.dispose();
      // A ΔW built inside the kept directions is kept; one built from the other directions is removed.
      const U = bases.U.arraySync();
      const V = bases.V.arraySync();
      for (const region of ['top', 'middle', 'bottom'] as const) {
        const f = 0.5;
        const l = keptRange(region, m, f);
        const r = keptRange(region, n, f);
        const build = (inside: boolean): Float32Array => {
          const out = new Float32Array(m * n);
          for (let a = 0; a < m; a++) for (let b = 0; b < n; b++) {
            const inA = a >= l.start && a < l.start + l.count;
            const inB = b >= r.start && b < r.start + r.count;
            if ((inA && inB) !== inside) continue;
            const c = Math.sin(3 * a + 5 * b + 1);
            for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j] += c * U[i][a] * V[j][b];
          }
          return out;
        };
        for (const inside of [true, false]) {
          const d = build(inside);
          const dt = tf.tensor2d(d, [m, n]);
          const p = projectDelta(dt, bases, region, f);
          const expected = inside ? d : new Float32Array(m * n);
          const err = maxAbsDiff(p.dataSync(), expected);
          tf.dispose([dt, p]);
          assert.ok(err < 1e-4, `${region}, ΔW ${inside ? 'inside' : 'outside'} the kept subspaces: off by ${err}`);
        }
      }
    } finally {
      delta.dispose();
      bases.dispose();
    }
  });
}

test('energy share, layer indices, module types by longest key, median and std, CSV quoting', () => {
  assert.equal(energyShare([3, 4], 1), 9 / 25);
  assert.equal(energyShare([3, 4], 2), 1);
  assert.equal(energyShare([0, 0], 1), 1);
  assert.equal(layerOf('roberta.encoder.layer.11.attention.output.dense'), 11);
  assert.equal(layerOf('model.layers.3.self_attn.q_proj'), 3);
  assert.equal(layerOf('classifier.dense'), null);
  const mod = (name: string) => ({ name, outFeatures: 4, inFeatures: 4, hasBias: true });
  const groups = groupModules([
    mod('e.layer.0.attention.self.query'), mod('e.layer.0.attention.output.dense'), mod('e.layer.0.intermediate.dense'),
    mod('e.layer.0.output.dense'), mod('e.layer.1.attention.output.dense'), mod('e.layer.1.output.dense'),
  ], ['output.dense', 'attention.output.dense']);
  assert.deepEqual(groups.map((g) => [g.type, g.modules.map((m) => m.name)]), [
    ['output.dense', ['e.layer.0.output.dense', 'e.layer.1.output.dense']],
    ['attention.output.dense', ['e.layer.0.attention.output.dense', 'e.layer.1.attention.output.dense']],
  ]);
  assert.throws(() => groupModules([mod('e.layer.0.output.dense')], ['query']), /module type "query" matches no linear layer/);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.equal(median([]), null);
  assert.ok(Math.abs(stdDev([1, 2, 3, 4])! - Math.sqrt(5 / 3)) < 1e-12);
  assert.equal(stdDev([7]), 0);
  assert.equal(toCsv(['a', 'b'], [{ a: 'x,y', b: null }, { a: 'say "hi"', b: 2 }]), 'a,b\n"x,y",\n"say ""hi""",2\n');
});
