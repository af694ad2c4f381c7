/**
 * The pure pieces of training: losses (vs float64 hand computation, and their gradients vs closed form),
 * AdamW / SGD (vs torch.optim formulas in float64 over several steps, state save/restore), learning-rate
 * schedules (vs transformers' formulas) and global-norm clipping (torch semantics).
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { Rng } from '../sidecar/rng';
import { classificationLoss, causalLmLoss, regressionLoss } from '../sidecar/train/losses';
import { createOptimizer, defaultDecays } from '../sidecar/train/optimizers';
import { lrAt, makeSchedule, warmupStepsFor } from '../sidecar/train/schedule';
import { clipGradNorm } from '../sidecar/train/grad_clip';
import { IGNORE_INDEX } from '../sidecar/train/batching';

before(async () => {
  await initBackend();
});

function closeArrays(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const tol = atol + rtol * Math.abs(expected[i]);
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: expected ${expected[i]}, got ${actual[i]} (tolerance ${tol})`);
  }
}

/** float64 log-sum-exp and cross-entropy of one row. */
function ce64(row: number[], label: number): number {
  const m = Math.max(...row);
  return m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0)) - row[label];
}

// ---------------------------------------------------------------------------------------------- losses

test('classification cross-entropy: mean over the batch, stable for large logits', () => {
  const rows = [[1, 2, 3], [1000, 0, -1000], [-0.5, 0.25, 0.125]];
  const labels = [2, 1, 0];
  const expected = rows.reduce((s, r, i) => s + ce64(r, labels[i]), 0) / rows.length;
  const loss = tf.tidy(() => classificationLoss(tf.tensor2d(rows), tf.tensor1d(labels, 'int32')).dataSync()[0]);
  assert.ok(Number.isFinite(loss));
  closeArrays([loss], [expected], 1e-6, 1e-6, 'loss'); // row 2 alone is 1000
  // d(mean CE)/dlogits = (softmax − onehot) / B; row 2's softmax is (1, 0, 0) to float precision.
  const grad = tf.tidy(() => tf.grad((x: tf.Tensor) => classificationLoss(x, tf.tensor1d(labels, 'int32')))(tf.tensor2d(rows)).dataSync());
  const expectedGrad = rows.flatMap((r, i) => {
    const m = Math.max(...r);
    const z = r.reduce((s, x) => s + Math.exp(x - m), 0);
    return r.map((x, k) => (Math.exp(x - m) / z - (k === labels[i] ? 1 : 0)) / rows.length);
  });
  closeArrays(grad, expectedGrad, 1e-7, 1e-5, 'dloss/dlogits');
});

test('regression MSE on (B, 1) predictions', () => {
  const loss = tf.tidy(() => regressionLoss(tf.tensor2d([[1], [2], [4]]), tf.tensor1d([1.5, 2, 1])).dataSync()[0]);
  closeArrays([loss], [(0.25 + 0 + 9) / 3], 1e-7, 1e-7, 'mse');
});

test('causal LM loss: sum over counted targets / their count; its gradient is (softmax − onehot)·mask / count', () => {
  const B = 2, T = 4, V = 7;
  const rng = new Rng(3);
  const logitsData = rng.normalArray(B * T * V, 2);
  const X = IGNORE_INDEX;
  const labels = [3, 0, X, X, /**/ X, 6, 2, X];
  const row = (i: number) => Array.from(logitsData.subarray(i * V, (i + 1) * V));
  let sum = 0;
  let count = 0;
  labels.forEach((l, i) => {
    if (l !== X) {
      sum += ce64(row(i), l);
      count++;
    }
  });
  const logits = tf.tensor3d(logitsData, [B, T, V]);
  const lab = tf.tensor2d(labels, [B, T], 'int32');
  const loss = tf.tidy(() => causalLmLoss(logits, lab).dataSync()[0]);
  closeArrays([loss], [sum / count], 1e-6, 1e-6, 'loss');
  const withDenominator = tf.tidy(() => causalLmLoss(logits, lab, 10).dataSync()[0]);
  closeArrays([withDenominator], [sum / 10], 1e-6, 1e-6, 'loss with denominator');
  // Gradient vs closed form.
  const grad = tf.tidy(() => tf.grad((x: tf.Tensor) => causalLmLoss(x, lab))(logits).dataSync());
  const expected: number[] = [];
  labels.forEach((l, i) => {
    const r = row(i);
    const m = Math.max(...r);
    const z = r.reduce((s, x) => s + Math.exp(x - m), 0);
    r.forEach((x, k) => expected.push(l === X ? 0 : (Math.exp(x - m) / z - (k === l ? 1 : 0)) / count));
  });
  closeArrays(grad, expected, 1e-6, 1e-5, 'dloss/dlogits');
  // Through variableGrads (as the loop calls it): the same gradient, and no tensor left behind.
  const w = tf.variable(tf.tensor3d(logitsData, [B, T, V]));
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() => causalLmLoss(w, lab), [w]);
  closeArrays(grads[w.name].dataSync(), expected, 1e-6, 1e-5, 'variableGrads');
  value.dispose();
  tf.dispose(grads);
  assert.equal(tf.memory().numTensors, before, 'tensors left by the loss and its gradient');
  w.dispose();
  const none = tf.tidy(() => causalLmLoss(logits, tf.fill([B, T], X, 'int32')).dataSync()[0]);
  assert.equal(none, 0);
  logits.dispose();
  lab.dispose();
});

// ---------------------------------------------------------------------------------------------- optimizers

/** torch.optim.AdamW in float64, one parameter tensor. */
function adamw64(p: number[], grads: number[][], lr: number, wd: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  p = [...p];
  grads.forEach((g, s) => {
    const t = s + 1;
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps;
      p[i] -= (lr / (1 - b1 ** t)) * (m[i] / denom);
    }
  });
  return p;
}

function gradSequence(rng: Rng, steps: number, n: number, scale: number): number[][] {
  return Array.from({ length: steps }, () => Array.from(rng.normalArray(n, scale)));
}

test('AdamW equals torch.optim.AdamW (decoupled decay, bias correction) over 6 steps, per-parameter lrs', () => {
  const rng = new Rng(11);
  const r0 = Array.from(rng.normalArray(9, 0.5));
  const h0 = Array.from(rng.normalArray(3, 0.5));
  const gR = gradSequence(rng, 6, 9, 0.1);
  const gH = gradSequence(rng, 6, 3, 1e-3); // small grads: eps and bias correction matter
  const vars = new Map<string, tf.Variable>([
    ['encoder.layer.0.query.loraxs_R', tf.variable(tf.tensor2d(r0, [3, 3]))],
    ['classifier.bias', tf.variable(tf.tensor1d(h0))],
  ]);
  const lrs: Record<string, number> = { 'encoder.layer.0.query.loraxs_R': 1e-2, 'classifier.bias': 3e-3 };
  const opt = createOptimizer('adamw', { weightDecay: 0.1 });
  const tensorsBefore = tf.memory().numTensors;
  for (let s = 0; s < 6; s++) {
    const grads = new Map<string, tf.Tensor>([
      ['encoder.layer.0.query.loraxs_R', tf.tensor2d(gR[s], [3, 3])],
      ['classifier.bias', tf.tensor1d(gH[s])],
    ]);
    opt.step(grads, vars, (name) => lrs[name]);
    grads.forEach((g) => g.dispose());
    if (s === 0) assert.equal(tf.memory().numTensors, tensorsBefore + 4, 'm and v of two parameters');
  }
  assert.equal(tf.memory().numTensors, tensorsBefore + 4, 'no tensors leak per step');
  closeArrays(vars.get('encoder.layer.0.query.loraxs_R')!.dataSync(), adamw64(r0, gR, 1e-2, 0.1), 1e-6, 1e-5, 'R');
  // Biases get no weight decay by default (transformers' Trainer groups).
  closeArrays(vars.get('classifier.bias')!.dataSync(), adamw64(h0, gH, 3e-3, 0), 1e-6, 1e-5, 'bias');
  assert.equal(defaultDecays('classifier.bias'), false);
  assert.equal(defaultDecays('roberta.encoder.layer.0.output.LayerNorm.weight'), false);
  assert.equal(defaultDecays('classifier.dense.weight'), true);
  opt.dispose();
  vars.forEach((v) => v.dispose());
});

test('AdamW state saved after 3 steps and restored gives exactly the same next 3 steps', () => {
  const rng = new Rng(5);
  const p0 = rng.normalArray(6, 1);
  const grads = gradSequence(rng, 6, 6, 0.3);
  const run = (opt: ReturnType<typeof createOptimizer>, v: tf.Variable, from: number, to: number) => {
    for (let s = from; s < to; s++) {
      const g = new Map<string, tf.Tensor>([['w', tf.tensor2d(grads[s], [2, 3])]]);
      opt.step(g, new Map([['w', v]]), () => 0.05);
      g.forEach((t) => t.dispose());
    }
  };
  const a = createOptimizer('adamw', { weightDecay: 0.01 });
  const va = tf.variable(tf.tensor2d(p0, [2, 3]));
  run(a, va, 0, 3);
  const saved = a.state();
  const pSaved = Float32Array.from(va.dataSync());
  assert.equal(saved.params.w.step, 3);
  assert.ok(saved.params.w.m instanceof Float32Array && saved.params.w.m.length === 6);
  run(a, va, 3, 6);
  // A fresh optimizer, restored from plain arrays (as a checkpoint would hold them).
  const b = createOptimizer('adamw', { weightDecay: 0.01 });
  b.load(JSON.parse(JSON.stringify(saved, (_, x) => (x instanceof Float32Array ? { f32: [...x] } : x)),
    (_, x) => (x && typeof x === 'object' && 'f32' in x ? Float32Array.from(x.f32 as number[]) : x)));
  const vb = tf.variable(tf.tensor2d(pSaved, [2, 3]));
  run(b, vb, 3, 6);
  assert.deepEqual([...vb.dataSync()], [...va.dataSync()]);
  assert.throws(() => createOptimizer('sgd').load(saved), /state is for adamw/);
  [a, b].forEach((o) => o.dispose());
  [va, vb].forEach((v) => v.dispose());
});

test('SGD without momentum: p ← p − lr·(g + wd·p), no state', () => {
  const opt = createOptimizer('sgd', { weightDecay: 0.5 });
  const v = tf.variable(tf.tensor1d([1, -2, 3]));
  const g = [0.1, 0.2, -0.3];
  const p = [1, -2, 3];
  for (let s = 0; s < 3; s++) {
    const grads = new Map<string, tf.Tensor>([['w', tf.tensor1d(g)]]);
    opt.step(grads, new Map([['w', v]]), () => 0.1);
    grads.forEach((t) => t.dispose());
    for (let i = 0; i < 3; i++) p[i] -= 0.1 * (g[i] + 0.5 * p[i]);
  }
  closeArrays(v.dataSync(), p, 1e-7, 1e-6, 'sgd');
  assert.equal(opt.state().params.w.m, undefined);
  v.dispose();
});

// ---------------------------------------------------------------------------------------------- schedules

test('warmup steps = ceil(total × ratio) with the float product Python computes', () => {
  assert.equal(warmupStepsFor(0.06, 100), 6);
  // 100 * 0.07 = 7.000000000000001 in doubles: math.ceil gives 8 in Python (transformers), so here too.
  assert.equal(warmupStepsFor(0.07, 100), 8);
  assert.equal(warmupStepsFor(0.1, 50), 5);
  assert.equal(warmupStepsFor(0, 50), 0);
  assert.equal(warmupStepsFor(0.06, 10), 1);
});

test('linear schedule: warmup then linear decay to 0 (get_linear_schedule_with_warmup)', () => {
  const s = makeSchedule('linear', 10, 0.2); // warmup 2
  assert.deepEqual([0, 1, 2, 6, 9, 10, 12].map((k) => lrAt(k, s)), [0, 0.5, 1, 4 / 8, 1 / 8, 0, 0]);
  const noWarmup = makeSchedule('linear', 4, 0);
  assert.deepEqual([0, 1, 2, 3].map((k) => lrAt(k, noWarmup)), [1, 0.75, 0.5, 0.25]);
});

test('cosine schedule: warmup then half a cosine (get_cosine_schedule_with_warmup)', () => {
  const s = makeSchedule('cosine', 10, 0.2); // warmup 2, 8 decay steps
  closeArrays([0, 1, 2, 4, 6, 8, 10].map((k) => lrAt(k, s)),
    [0, 0.5, 1, 0.5 * (1 + Math.cos(Math.PI / 4)), 0.5, 0.5 * (1 + Math.cos((3 * Math.PI) / 4)), 0], 1e-15, 0, 'cosine');
});

test('constant schedule with warmup (get_constant_schedule_with_warmup)', () => {
  const s = makeSchedule('constant', 100, 0.04); // warmup 4
  assert.deepEqual([0, 1, 3, 4, 50, 100].map((k) => lrAt(k, s)), [0, 0.25, 0.75, 1, 1, 1]);
});

// ---------------------------------------------------------------------------------------------- clipping

test('global-norm clipping as torch.nn.utils.clip_grad_norm_', () => {
  const make = () => new Map<string, tf.Tensor>([['a', tf.tensor1d([3, 4])], ['b', tf.tensor2d([[12]])]]);
  const before = tf.memory().numTensors;
  const grads = make();
  const norm = clipGradNorm(grads, 1);
  closeArrays([norm], [13], 1e-6, 0, 'total norm');
  const coef = 1 / (13 + 1e-6);
  closeArrays(grads.get('a')!.dataSync(), [3 * coef, 4 * coef], 1e-7, 1e-6, 'a');
  closeArrays(grads.get('b')!.dataSync(), [12 * coef], 1e-7, 1e-6, 'b');
  assert.deepEqual(grads.get('b')!.shape, [1, 1]);
  grads.forEach((g) => g.dispose());
  assert.equal(tf.memory().numTensors, before, 'old gradients and temporaries disposed');
  // Under the limit, and with 0 (disabled): unchanged, same tensors.
  for (const maxNorm of [20, 0]) {
    const g2 = make();
    const a = g2.get('a');
    closeArrays([clipGradNorm(g2, maxNorm)], [13], 1e-6, 0, 'norm');
    assert.equal(g2.get('a'), a);
    assert.deepEqual([...g2.get('a')!.dataSync()], [3, 4]);
    g2.forEach((g) => g.dispose());
  }
});
