/**
 * The wasm BatchMatMul wrapper (sidecar/wasm_matmul.ts) against tfjs's pure-JS cpu backend (a second
 * implementation): every combination of transpose flags, 2-D, a batch with a shared right operand, and a
 * batch of right operands (attention), plus the gradients (which ask for transposed products), within
 * float32 summation-order error; and the backend set-up must install it. Large right operands without
 * flags (a frozen W in dy · W) must leave no XNNPACK packed copy behind (the wasm heap must not hold each
 * weight twice).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { Rng } from '../sidecar/rng';
import { PACK_COPY_ELEMENTS, wasmMatMulPatched } from '../sidecar/backend/wasm_matmul';

const CASES: Array<[number[], number[], boolean, boolean]> = [
  [[5, 7], [7, 3], false, false], [[5, 7], [3, 7], false, true], [[7, 5], [7, 3], true, false], [[7, 5], [3, 7], true, true],
  [[3, 5, 7], [7, 3], false, false], [[3, 5, 7], [3, 7], false, true], [[3, 7, 5], [7, 3], true, false],
  [[2, 4, 5, 7], [2, 4, 7, 3], false, false], [[2, 4, 5, 7], [2, 4, 3, 7], false, true], [[2, 4, 7, 5], [2, 4, 7, 3], true, false],
  [[1, 5, 7], [1, 7, 3], false, false], [[4, 5, 7], [1, 3, 7], false, true],
];

function values(shape: number[], seed: number): Float32Array {
  return new Rng(seed).normalArray(shape.reduce((a, b) => a * b, 1));
}

/** (product, d/da, d/db of sum(product · weights)) on the current backend (the product alone when broadcasting). */
function productAndGrads(sa: number[], sb: number[], ta: boolean, tb: boolean): Float32Array[] {
  return tf.tidy(() => {
    const a = tf.tensor(values(sa, 1), sa);
    const b = tf.tensor(values(sb, 2), sb);
    const y = tf.matMul(a, b, ta, tb);
    // tfjs-core's matMul gradient does not reduce a broadcast batch (on any backend): products only there.
    if (sa.slice(0, -2).join() !== sb.slice(0, -2).join()) return [y.dataSync() as Float32Array];
    const w = tf.tensor(values(y.shape, 3), y.shape);
    const [ga, gb] = tf.grads((x: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, z, ta, tb), w)))([a, b]);
    return [y, ga, gb].map((t) => t.dataSync() as Float32Array);
  });
}

test('patched wasm matMul (and its gradients) equals the cpu backend for every flag and batch layout', async () => {
  const info = await initBackend();
  if (info.name !== 'wasm') return; // the patch applies to wasm only
  for (const [sa, sb, ta, tb] of CASES) {
    const got = productAndGrads(sa, sb, ta, tb);
    await tf.setBackend('cpu');
    const want = productAndGrads(sa, sb, ta, tb);
    await tf.setBackend('wasm');
    got.forEach((g, k) => {
      assert.equal(g.length, want[k].length);
      g.forEach((v, i) => assert.ok(Math.abs(v - want[k][i]) <= 1e-5 * (1 + Math.abs(want[k][i])),
        `[${sa}]·[${sb}] ta=${ta} tb=${tb} output ${k} [${i}]: ${v} vs ${want[k][i]}`));
    });
  }
});

// The speed of the two paths is measured by `npm run bench` (a timed assertion here would flake on a
// busy machine); the test checks that the backend set-up installs the wrapper, so training uses it.
test('the wasm backend set-up installs the BatchMatMul wrapper', async () => {
  const info = await initBackend();
  if (info.name !== 'wasm') return;
  assert.equal(wasmMatMulPatched(), true);
  const kernel = tf.getKernel('BatchMatMul', 'wasm');
  assert.ok(kernel, 'a BatchMatMul kernel is registered for wasm');
  // The wrapper answers a flagged product itself; it must still give the product (checked in full above).
  const y = tf.matMul(tf.ones([2, 3]), tf.ones([4, 3]), false, true);
  assert.deepEqual(y.shape, [2, 4]);
  assert.deepEqual(Array.from(y.dataSync()), new Array(8).fill(3));
});

// XNNPACK caches an operator with a packed copy of every right operand it multiplies without flags, until
// that tensor is disposed; frozen weights never are, so a model's weights were held twice in the 4 GB heap
// (Qwen2-0.5B-shaped ran out of it; tfjs-wasm then leaves the product unwritten). The wrapper copies large
// right operands first, so the packed copy lives for one call. Without it the heap grew by 499 MiB here
// (twice the weights); with it by about their bytes once.
test('products with large frozen right operands keep no packed copy in the wasm heap, and stay exact', async () => {
  const info = await initBackend();
  if (info.name !== 'wasm') return;
  const heapBytes = (): number => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
  const n = 1024;
  const count = 64; // 64 weights of 4 MiB: 256 MiB
  assert.ok(n * n >= PACK_COPY_ELEMENTS);
  const x = tf.tensor2d(values([4, n], 5), [4, n]);
  const before = heapBytes();
  const weights = Array.from({ length: count }, (_, i) => tf.tensor2d(values([n, n], 100 + i), [n, n]));
  for (const w of weights) tf.matMul(x, w).dispose();
  const grown = heapBytes() - before;
  const weightBytes = count * n * n * 4;
  assert.ok(grown < 1.5 * weightBytes, `the heap grew by ${(grown / 2 ** 20).toFixed(0)} MiB for ${(weightBytes / 2 ** 20).toFixed(0)} MiB of weights`);
  // The copied path gives the product: against float64 sums for the last weight.
  const y = tf.matMul(x, weights[count - 1]).dataSync();
  const xs = values([4, n], 5);
  const ws = values([n, n], 100 + count - 1);
  for (const [i, j] of [[0, 0], [1, 517], [3, n - 1]]) {
    let want = 0;
    for (let k = 0; k < n; k++) want += xs[i * n + k] * ws[k * n + j];
    assert.ok(Math.abs(y[i * n + j] - want) <= 1e-4 * (1 + Math.abs(want)), `y[${i}, ${j}] = ${y[i * n + j]}, float64 ${want}`);
  }
  for (const w of weights) w.dispose();
  x.dispose();
});
