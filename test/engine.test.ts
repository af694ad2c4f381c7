/**
 * The engine end to end on the tiny transformers checkpoints of every family: merging an adapter gives
 * the logits of the adapted model; a cancelled and resumed run logs what an uninterrupted run logs; the
 * tensor count does not grow from step to step. With ../shared present: stories260K generates the story
 * its README documents, and a causal-LM run on real text lowers validation perplexity.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession } from '../sidecar/session/model_session';
import { mergeRun } from '../sidecar/engine/merge_run';
import { generateText } from '../sidecar/engine/generate';
import { runTraining } from '../sidecar/train/loop';
import { loadConfig } from '../sidecar/config/parse';
import type { AdapterConfig, RunConfig } from '../sidecar/config/types';
import { makeWorkspace } from './workspace';
import { glue, needsShared, stories260k, tempDir } from './paths';

process.env.LORAXS_CACHE_DIR ??= tempDir('loraxs-cache-');

const ENCODER_TARGETS = ['query', 'key', 'value', 'attention.output.dense', 'intermediate.dense', 'output.dense'];
const DECODER_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function adapterConfig(targets: string[], initStd: number): AdapterConfig {
  return { rank: 4, rankPattern: {}, alpha: 8, targets, init: 'svd', initStd, svd: { method: 'randomized', oversamples: 10, powerIters: 4 } };
}

/** Two sequences, the second right-padded. */
function fixedInputs() {
  const ids = [[4, 10, 11, 12, 13, 14], [4, 20, 21, 22, 1, 1]];
  const mask = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]];
  return { inputIds: tf.tensor2d(ids, [2, 6], 'int32'), attentionMask: tf.tensor2d(mask, [2, 6], 'int32'), tokenTypeIds: tf.zeros([2, 6], 'int32') as tf.Tensor2D };
}

for (const family of ['bert', 'roberta', 'llama', 'llama3', 'mistral', 'qwen2', 'gemma']) {
  test(`${family}: merged weights give the adapted model's logits (R at unit scale, 1e-4)`, async () => {
    await initBackend();
    const ws = makeWorkspace(family, 'seq-cls');
    const targets = ['bert', 'roberta'].includes(family) ? ENCODER_TARGETS : DECODER_TARGETS;
    const inputs = fixedInputs();
    const adapted = await openModelSession({ modelDir: ws.model, task: 'classification', numLabels: 3, adapter: adapterConfig(targets, 1.0), seed: 3, dropout: null });
    const base = await openModelSession({ modelDir: ws.model, task: 'classification', numLabels: 3, adapter: null, seed: 3, dropout: null });
    const adapterDir = path.join(ws.dir, 'adapter');
    const merged = path.join(ws.dir, 'merged');
    let a: Float32Array;
    let b: Float32Array;
    try {
      a = adapted.logits(inputs, false).dataSync() as Float32Array;
      b = base.logits(inputs, false).dataSync() as Float32Array;
      adapted.adapters!.save(adapterDir, { head: adapted.head, task: 'classification', labelNames: ['x', 'y', 'z'], numLabels: 3, eval: null, modelDir: ws.model });
    } finally {
      adapted.dispose();
      base.dispose();
    }
    // The adapter must change the logits a lot, or the comparison below would prove nothing.
    const change = Math.max(...a.map((v, i) => Math.abs(v - b[i])));
    assert.ok(change > 1e-2, `the adapter changes the logits by only ${change}`);
    await mergeRun({ model: ws.model, file: path.join(ws.dir, 'x.loraxs.yaml') } as RunConfig, adapterDir, merged);
    const config = JSON.parse(fs.readFileSync(path.join(merged, 'config.json'), 'utf8'));
    assert.match(config.architectures[0], /ForSequenceClassification$/);
    assert.deepEqual(config.id2label, { 0: 'x', 1: 'y', 2: 'z' });
    const m = await openModelSession({ modelDir: merged, task: 'classification', numLabels: 3, adapter: null, seed: 99, dropout: null });
    try {
      const c = m.logits(inputs, false).dataSync();
      const err = Math.max(...a.map((v, i) => Math.abs(v - c[i])));
      assert.ok(err < 1e-4, `merged vs adapted logits differ by ${err}`);
    } finally {
      m.dispose();
      for (const t of Object.values(inputs)) t.dispose();
    }
  });
}

function metricsWithoutTimes(file: string): object[] {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => {
    const { tokens_per_s: _t, elapsed_s: _e, eta_s: _r, ...rest } = JSON.parse(l);
    void _t;
    void _e;
    void _r;
    return rest;
  });
}

test('a cancelled and resumed run logs and saves exactly what an uninterrupted run does; tensors do not grow', async () => {
  await initBackend();
  const ws = makeWorkspace('bert', 'seq-cls', { train: 44, dev: 12 });
  const yaml = (out: string) => `model: model
task: classification
data: { train: train.tsv, validation: dev.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [query, value, output.dense] }
training: { epochs: 3, batch_size: 8, lr: 5.0e-3, head_lr: 1.0e-2, warmup_ratio: 0.1, seed: 7, grad_accum_steps: 1 }
output: ${out}
`;
  const whole = loadConfig(ws.config('whole', yaml('out-whole')), { requireTraining: true });
  const counts: number[] = [];
  const r1 = await runTraining(whole, { events: { step: () => counts.push(tf.memory().numTensors) } });
  assert.equal(r1.steps, 18); // ceil(44 / 8) = 6 updates × 3 epochs
  assert.equal(r1.cancelled, false);
  assert.ok(counts.slice(2).every((c) => c === counts[2]), `tensor count changed between steps: ${counts.join(' ')}`);

  const parted = loadConfig(ws.config('parted', yaml('out-parted')), { requireTraining: true });
  const controller = new AbortController();
  const r2 = await runTraining(parted, { signal: controller.signal, events: { step: (s) => { if (s.step === 8) controller.abort(); } } });
  assert.equal(r2.cancelled, true);
  assert.equal(r2.steps, 8);
  // Damage the log after the checkpoint, as a crash would: resume must trim it.
  fs.appendFileSync(path.join(ws.dir, 'out-parted', 'metrics.jsonl'), '{"step":9,"epoch":2,"loss":1}\n{"step":');
  const r3 = await runTraining(parted, { resume: true });
  assert.equal(r3.steps, 18);
  assert.deepEqual(metricsWithoutTimes(path.join(ws.dir, 'out-parted', 'metrics.jsonl')), metricsWithoutTimes(path.join(ws.dir, 'out-whole', 'metrics.jsonl')));
  for (const f of ['adapter.safetensors', 'head.safetensors', 'last/adapter.safetensors']) {
    assert.ok(fs.readFileSync(path.join(ws.dir, 'out-parted', f)).equals(fs.readFileSync(path.join(ws.dir, 'out-whole', f))), `${f} differs`);
  }
  const lines = metricsWithoutTimes(path.join(ws.dir, 'out-whole', 'metrics.jsonl')) as Array<Record<string, unknown>>;
  assert.equal(lines.filter((l) => 'eval' in l).length, 4); // the step-0 baseline and one per epoch
  assert.deepEqual(lines.filter((l) => 'loss' in l).map((l) => l.step), Array.from({ length: 18 }, (_, i) => i + 1));
});

test('stories260K generates the story its README documents', { skip: needsShared(stories260k) }, async () => {
  const text = await generateText({ modelDir: stories260k, prompt: 'Once upon a time', maxTokens: 40 });
  assert.ok(text.startsWith('Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.'), text);
});

test('LoRA-XS on stories260K lowers validation perplexity on real text (SST-2 sentences)', { skip: needsShared(stories260k) || needsShared(glue) }, async () => {
  const dir = tempDir('loraxs-clm-');
  const lines = fs.readFileSync(path.join(glue, 'SST-2', 'train.tsv'), 'utf8').split('\n');
  fs.writeFileSync(path.join(dir, 'train.tsv'), lines.slice(0, 241).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'dev.tsv'), [lines[0], ...lines.slice(1000, 1060)].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'clm.loraxs.yaml'), `model: ${stories260k}
task: causal-lm
data: { train: train.tsv, validation: dev.tsv, text: sentence }
adapter: { rank: 8, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
training: { epochs: 2, batch_size: 16, lr: 5.0e-3, max_length: 48 }
output: out
`);
  const result = await runTraining(loadConfig(path.join(dir, 'clm.loraxs.yaml'), { requireTraining: true }));
  const evals = fs.readFileSync(path.join(dir, 'out', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.eval);
  const before = evals[0].eval.perplexity;
  const after = result.best!.eval.perplexity;
  assert.ok(after < 0.7 * before, `perplexity ${before} -> ${after}`);
});

test('a loss that becomes infinite or NaN stops with a clear error and keeps the last good checkpoint', async () => {
  await initBackend();
  const ws = makeWorkspace('bert', 'seq-cls', { train: 32, dev: 8 });
  // Update 1 runs at learning rate 0 (warmup), then 1e30 explodes R until the loss is no longer finite at
  // some update N. A checkpoint is taken after every update (eval_every 1); it reaches the disk only when
  // the next loss is finite, so the one on disk is from update N - 2 (whose weights gave update N - 1's
  // finite loss), never from update N - 1.
  const file = ws.config('nan', `model: model
task: classification
data: { train: train.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [query, value] }
training: { epochs: 3, batch_size: 16, optimizer: sgd, lr: 1.0e+30, max_grad_norm: 0, warmup_ratio: 0.1, schedule: constant, seed: 1, eval_every: 1 }
output: out
`);
  const config = loadConfig(file, { requireTraining: true });
  let failedAt = 0;
  await assert.rejects(runTraining(config), (e: Error) => {
    const m = /the training loss became (NaN|Infinity|-Infinity) at update (\d+) /.exec(e.message);
    assert.ok(m, e.message);
    failedAt = Number(m[2]);
    assert.match(e.message, new RegExp(`last good checkpoint \\(update ${failedAt - 2}\\)`));
    return true;
  });
  assert.ok(failedAt >= 3, `failed at update ${failedAt}`);
  const state = JSON.parse(fs.readFileSync(path.join(ws.dir, 'out', 'checkpoint', 'state.json'), 'utf8'));
  assert.equal(state.position.step, failedAt - 2);
  const steps = fs.readFileSync(path.join(ws.dir, 'out', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(steps.length, failedAt - 1);
  assert.ok(steps.every((r) => Number.isFinite(r.loss)));
});
