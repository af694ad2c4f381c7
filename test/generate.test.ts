/**
 * Generation with a KV cache: the cached logits of every position equal the no-cache forward pass within
 * 1e-4 on the tiny causal-LM checkpoints of every decoder family (Mistral's has a sliding window of 4, so
 * the window is crossed), with and without an adapter, and on stories260K when ../shared is present, where
 * greedy decoding with the cache prints the documented story and the same ids as without. The sampler:
 * top-k 1 and a tiny top-p are greedy, a seed reproduces a sample, and draws follow the warped distribution.
 * Stop strings and sampling options through the CLI as users run it.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession, type ModelSession } from '../sidecar/session/model_session';
import { argmaxOf, checkSampling, generateFromIds, sampleToken } from '../sidecar/engine/generate';
import { Rng } from '../sidecar/rng';
import type { AdapterConfig } from '../sidecar/config/types';
import { fixtures, needsShared, repoRoot, stories260k, tempDir } from './paths';

process.env.LORAXS_CACHE_DIR ??= tempDir('loraxs-cache-');

const TOLERANCE = 1e-4;
const DECODER_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function adapterConfig(): AdapterConfig {
  return { rank: 4, rankPattern: {}, alpha: 8, targets: DECODER_TARGETS, init: 'svd', initStd: 1.0, svd: { method: 'randomized', oversamples: 10, powerIters: 4 } };
}

/**
 * The largest difference between the no-cache logits of `ids` (one forward pass) and the cached ones: the
 * first `prefill` tokens in one call, then one token per call.
 */
function cacheError(session: ModelSession, ids: number[], prefill: number): number {
  const T = ids.length;
  const full = tf.tidy(() => session.logits({ inputIds: tf.tensor2d(ids, [1, T], 'int32'), attentionMask: tf.ones([1, T], 'int32') as tf.Tensor2D }, false)
    .dataSync() as Float32Array);
  const V = full.length / T;
  const cache = session.kvCache();
  assert.ok(cache, 'decoders have a KV cache');
  const before = tf.memory().numTensors;
  let err = 0;
  try {
    const chunks = [ids.slice(0, prefill), ...ids.slice(prefill).map((x) => [x])];
    let pos = 0;
    for (const chunk of chunks) {
      const got = tf.tidy(() => session.logitsCached(tf.tensor2d(chunk, [1, chunk.length], 'int32'), cache).dataSync() as Float32Array);
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - full[pos * V + i]));
      pos += chunk.length;
    }
    assert.equal(cache.length, T);
  } finally {
    cache.dispose();
  }
  assert.equal(tf.memory().numTensors, before, 'the cache frees what it held');
  return err;
}

for (const family of ['llama', 'llama3', 'mistral', 'qwen2', 'gemma']) {
  test(`${family}: KV-cached logits equal the full forward pass within ${TOLERANCE} (base and adapted)`, async () => {
    await initBackend();
    const modelDir = path.join(fixtures, 'tiny', family, 'causal-lm');
    const rng = new Rng(7);
    const ids = Array.from({ length: 14 }, () => 1 + Math.floor(rng.uniform() * 90));
    for (const adapter of [null, adapterConfig()]) {
      const session = await openModelSession({ modelDir, task: 'causal-lm', numLabels: 1, adapter, seed: 5, dropout: null });
      try {
        const err = cacheError(session, ids, 5);
        console.log(`${family}${adapter ? " adapted" : ""}: max cached-vs-full logit difference ${err.toExponential(2)}`);
        assert.ok(err < TOLERANCE, `${family}${adapter ? ' adapted' : ''}: cached vs full logits differ by ${err}`);
        // A one-token prefill (every step incremental) too.
        const err1 = cacheError(session, ids, 1);
        assert.ok(err1 < TOLERANCE, `${family}: one-token prefill differs by ${err1}`);
      } finally {
        session.dispose();
      }
    }
  });
}

test('stories260K: cached logits match the no-cache logits; greedy ids with and without the cache agree', { skip: needsShared(stories260k) }, async () => {
  await initBackend();
  const session = await openModelSession({ modelDir: stories260k, task: 'causal-lm', numLabels: 1, adapter: null, seed: 0, dropout: null });
  try {
    const prompt = session.tokenizer.encode('Once upon a time', { addSpecialTokens: true }).ids;
    const cached = generateFromIds(session, prompt, { maxTokens: 40 });
    const plain = generateFromIds(session, prompt, { maxTokens: 40, cache: false });
    assert.deepEqual(cached.ids, plain.ids);
    assert.ok(cached.text.startsWith(', there was a little girl named Lily. She loved to play outside in the park.'), cached.text);
    const err = cacheError(session, cached.ids, prompt.length);
    console.log(`stories260K: max |cached - full| logit difference over ${cached.ids.length} positions: ${err.toExponential(2)}`);
    assert.ok(err < TOLERANCE, `cached vs full logits differ by ${err}`);
  } finally {
    session.dispose();
  }
});

test('sampler: top-k 1 and a tiny top-p are greedy; a seed reproduces draws; frequencies follow softmax(logits / T)', () => {
  const logits = new Float32Array([0.5, 2.0, -1.0, 1.5, 2.0]);
  assert.equal(argmaxOf(logits), 1, 'the first of equal maxima');
  const rng = new Rng(1);
  for (let i = 0; i < 50; i++) {
    assert.equal(sampleToken(logits, { temperature: 1, topK: 1 }, rng), 1);
    assert.equal(sampleToken(logits, { temperature: 1, topP: 1e-6 }, rng), 1);
  }
  const draw = (seed: number) => { const r = new Rng(seed); return Array.from({ length: 20 }, () => sampleToken(logits, { temperature: 0.7 }, r)); };
  assert.deepEqual(draw(3), draw(3));
  assert.notDeepEqual(draw(3), draw(4));
  // Top-k 2 keeps only the two 2.0 logits: half each. Top-p 0.8 at T=1 keeps {1, 4, 3} (0.33+0.33 < 0.8 <= +0.2).
  const counts = new Array<number>(5).fill(0);
  const n = 20000;
  const r = new Rng(11);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, { temperature: 1, topK: 2 }, r)]++;
  assert.equal(counts[0] + counts[2] + counts[3], 0);
  assert.ok(Math.abs(counts[1] / n - 0.5) < 0.02, `top-k 2: ${counts}`);
  const p = Array.from(logits, (x) => Math.exp(x));
  const kept = [1, 4, 3];
  const z = kept.reduce((s, i) => s + p[i], 0);
  counts.fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, { temperature: 1, topP: 0.8 }, r)]++;
  assert.equal(counts[0] + counts[2], 0, `top-p 0.8 draws outside the nucleus: ${counts}`);
  for (const i of kept) assert.ok(Math.abs(counts[i] / n - p[i] / z) < 0.02, `token ${i}: ${counts[i] / n} vs ${p[i] / z}`);
  assert.throws(() => checkSampling({ maxTokens: 1, topK: 5 }), /need --temperature > 0/);
  assert.throws(() => checkSampling({ maxTokens: 1, temperature: 1, topP: 1.5 }), /--top-p must be in/);
});

function cli(args: string[]) {
  return spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), ...args], { encoding: 'utf8', env: { ...process.env, LORAXS_BACKEND: 'wasm' } });
}

test('CLI: greedy story unchanged, --stop cuts before the stop string, a seed reproduces a sample', { skip: needsShared(stories260k) }, () => {
  const base = ['generate', '--model', stories260k, '--prompt', 'Once upon a time', '--max-tokens', '40'];
  const greedy = cli(base);
  assert.equal(greedy.status, 0, greedy.stderr);
  assert.equal(greedy.stdout, 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.\n');
  const stopped = cli([...base, '--stop', 'park']);
  assert.equal(stopped.status, 0, stopped.stderr);
  assert.equal(stopped.stdout, 'Once upon a time, there was a little girl named Lily. She loved to play outside in the \n');
  const a = cli([...base, '--temperature', '1', '--top-p', '0.9', '--seed', '5']);
  const b = cli([...base, '--temperature', '1', '--top-p', '0.9', '--seed', '5']);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.ok(a.stdout.startsWith('Once upon a time'));
  // Sampling samples: another seed draws another continuation, and neither is the greedy one.
  const c = cli([...base, '--temperature', '1', '--top-p', '0.9', '--seed', '6']);
  assert.equal(c.status, 0, c.stderr);
  assert.notEqual(c.stdout, a.stdout, 'seeds 5 and 6 draw the same continuation');
  assert.ok(a.stdout !== greedy.stdout || c.stdout !== greedy.stdout, 'sampling at temperature 1 reproduced the greedy story twice');
  const bad = cli([...base, '--top-k', '3']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /need --temperature > 0/);
  const noTemplate = cli([...base, '--chat']);
  assert.notEqual(noTemplate.status, 0);
  assert.match(noTemplate.stderr, /has no chat template/);
});
