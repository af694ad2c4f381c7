/**
 * SVD initialisation speed and accuracy: the engine's randomized truncated SVD (tf matmuls + float64 small
 * steps) vs its exact SVD, on weights shaped like BERT-base's attention (768 × 768) and FFN (3072 × 768)
 * matrices with a realistic decaying spectrum, and on the real stories260K weights when ../shared is present.
 * Prints a table; not a test. Run: npm run bench:svd
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/tf';
import { initBackend } from '../sidecar/backend';
import { randomizedSvd } from '../sidecar/loraxs/svd';
import { exactSvd } from '../sidecar/loraxs/exact_svd';
import { Rng } from '../sidecar/rng';
import { openCheckpoint, loadWeights } from '../sidecar/io/checkpoint';

/** A (m × n) matrix U diag(s) Vᵀ with s_i = 1 / (1 + i)^0.7 (roughly the decay of pretrained weights). */
function decaying(m: number, n: number, rng: Rng): tf.Tensor2D {
  return tf.tidy(() => {
    const k = Math.min(m, n);
    const q1 = tf.linalg.qr(tf.tensor2d(rng.normalArray(m * k), [m, k]))[0];
    const q2 = tf.linalg.qr(tf.tensor2d(rng.normalArray(n * k), [n, k]))[0];
    const s = tf.tensor1d(Array.from({ length: k }, (_, i) => 1 / (1 + i) ** 0.7));
    return tf.matMul(tf.mul(q1, s), q2, false, true) as tf.Tensor2D;
  });
}

function row(name: string, shape: number[], rank: number, ms: number, exactMs: number | null, relErr: number | null): void {
  console.log(`| ${name} | ${shape.join('×')} | ${rank} | ${ms.toFixed(1)} | ${exactMs === null ? '–' : exactMs.toFixed(0)} | ${relErr === null ? '–' : relErr.toExponential(1)} |`);
}

async function main(): Promise<void> {
  const info = await initBackend();
  console.log(`backend ${info.name}; randomized SVD: 10 oversamples, 4 power iterations\n`);
  console.log('| matrix | shape | r | randomized ms | exact ms | max rel. error of top-r σ |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: |');
  const rng = new Rng(0);
  for (const [name, m, n] of [['BERT-base attention', 768, 768], ['BERT-base FFN in', 3072, 768]] as const) {
    const W = decaying(m, n, rng);
    for (const rank of [8, 16, 25]) {
      const t0 = performance.now();
      const fast = randomizedSvd(W, rank, { oversamples: 10, powerIters: 4 }, new Rng(1));
      const ms = performance.now() - t0;
      let exactMs: number | null = null;
      let err: number | null = null;
      if (rank === 16) {
        const t1 = performance.now();
        const ex = exactSvd(W.dataSync(), m, n);
        exactMs = performance.now() - t1;
        err = Math.max(...Array.from(fast.S, (s, i) => Math.abs(s - ex.S[i]) / ex.S[i]));
      }
      row(name, [m, n], rank, ms, exactMs, err);
    }
    W.dispose();
  }
  const stories = path.resolve(__dirname, '..', '..', 'shared', 'models', 'stories260k');
  const dir = fs.existsSync(stories) ? stories : path.resolve(process.cwd(), '..', 'shared', 'models', 'stories260k');
  if (fs.existsSync(dir)) {
    const ckpt = openCheckpoint(dir);
    const weights = loadWeights(ckpt);
    const names = [...weights.keys()].filter((k) => /(proj)\.weight$/.test(k));
    const t0 = performance.now();
    for (const k of names) randomizedSvd(weights.get(k) as tf.Tensor2D, 8, { oversamples: 10, powerIters: 4 }, new Rng(1));
    console.log(`\nstories260K: ${names.length} linear layers at rank 8 in ${(performance.now() - t0).toFixed(0)} ms`);
  }
}

main();
