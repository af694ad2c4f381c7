/**
 * Forward passes against transformers: each family's tiny random checkpoint (test/fixtures/tiny, written by
 * test/reference/make_tiny_models.py) must give transformers' hidden states and task logits within 1e-4.
 * Plus properties that need no reference: padding does not change real tokens' outputs, no tensor leaks,
 * dropout is seeded and off in evaluation, new heads are initialised as transformers does.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { LoraxsError } from '../sidecar/errors';
import { Rng } from '../sidecar/rng';
import { readModelConfig } from '../sidecar/io/model_config';
import { readSafetensorsHeader, readTensorFloat32 } from '../sidecar/io/safetensors';
import { createBackbone } from '../sidecar/models/registry';
import { createHead } from '../sidecar/models/heads';
import { linearForward, plainContext } from '../sidecar/models/plain_context';
import { taskLogits } from '../sidecar/models/task_model';
import { robertaPositionIds } from '../sidecar/models/bert';
import { ropeInverseFrequencies } from '../sidecar/models/rope';
import type { ForwardContext, ForwardInputs, ModelConfig, Weights } from '../sidecar/models/types';
import { fixtures } from './paths';

const TOLERANCE = 1e-4;
const TINY = path.join(fixtures, 'tiny');
const FAMILIES = ['bert', 'roberta', 'llama', 'llama3', 'mistral', 'qwen2', 'gemma'];

interface Reference {
  model_type: string;
  versions: Record<string, string>;
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids?: number[][];
  hidden_states: number[][][];
  seq_cls_logits: number[][];
  causal_lm_logits?: number[][][];
}

/** A minimal loader: config.json through the config reader, every tensor of model.safetensors as float32. */
function loadFolder(dir: string): { config: ModelConfig; weights: Weights } {
  const config = readModelConfig(dir);
  const header = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
  const weights: Weights = new Map();
  for (const [name, entry] of header.tensors) weights.set(name, tf.tensor(readTensorFloat32(header, name), entry.shape));
  return { config, weights };
}

function disposeWeights(weights: Weights): void {
  weights.forEach((t) => t.dispose());
}

function readReference(family: string): Reference {
  return JSON.parse(fs.readFileSync(path.join(TINY, family, 'reference.json'), 'utf8')) as Reference;
}

function inputsOf(ref: Reference): ForwardInputs {
  return {
    inputIds: tf.tensor2d(ref.input_ids, undefined, 'int32'),
    attentionMask: tf.tensor2d(ref.attention_mask, undefined, 'int32'),
    tokenTypeIds: ref.token_type_ids ? tf.tensor2d(ref.token_type_ids, undefined, 'int32') : undefined,
  };
}

function disposeInputs(inputs: ForwardInputs): void {
  tf.dispose([inputs.inputIds, inputs.attentionMask, ...(inputs.tokenTypeIds ? [inputs.tokenTypeIds] : [])]);
}

/** max |a - b| over the positions whose mask is 1 (per-token arrays (B, T, N)). */
function maxAbsDiffMasked(actual: number[][][], expected: number[][][], mask: number[][]): number {
  let worst = 0;
  expected.forEach((seq, b) => seq.forEach((row, t) => {
    if (!mask[b][t]) return;
    row.forEach((v, i) => { worst = Math.max(worst, Math.abs(actual[b][t][i] - v)); });
  }));
  return worst;
}

function maxAbsDiff(actual: number[][], expected: number[][]): number {
  let worst = 0;
  expected.forEach((row, b) => row.forEach((v, i) => { worst = Math.max(worst, Math.abs(actual[b][i] - v)); }));
  return worst;
}

/** Largest |value| among the compared reference outputs, so a tolerance is seen against the scale. */
function scaleOf(values: number[][][], mask: number[][]): number {
  let m = 0;
  values.forEach((seq, b) => seq.forEach((row, t) => { if (mask[b][t]) row.forEach((v) => { m = Math.max(m, Math.abs(v)); }); }));
  return m;
}

test('setup: backend', async () => {
  await initBackend();
});

for (const family of FAMILIES) {
  test(`${family}: hidden states and sequence-classification logits match transformers within ${TOLERANCE}`, () => {
    const ref = readReference(family);
    const { config, weights } = loadFolder(path.join(TINY, family, 'seq-cls'));
    assert.equal(config.modelType, ref.model_type);
    const backbone = createBackbone(config, weights);
    const head = createHead(backbone, 'classification', 3, { seed: 0 });
    const inputs = inputsOf(ref);
    const ctx = plainContext(weights, { training: false });
    try {
      const hidden = backbone.forward(inputs, ctx);
      const hiddenDiff = maxAbsDiffMasked(hidden.arraySync(), ref.hidden_states, ref.attention_mask);
      hidden.dispose();
      assert.ok(scaleOf(ref.hidden_states, ref.attention_mask) > 0.5, 'reference hidden states are too small to test anything');
      assert.ok(hiddenDiff < TOLERANCE, `${family} hidden states: max |diff| ${hiddenDiff} >= ${TOLERANCE}`);
      const logits = taskLogits(backbone, head, inputs, ctx);
      assert.deepEqual(logits.shape, [2, 3]);
      const logitDiff = maxAbsDiff(logits.arraySync() as number[][], ref.seq_cls_logits);
      logits.dispose();
      assert.ok(logitDiff < TOLERANCE, `${family} classification logits: max |diff| ${logitDiff} >= ${TOLERANCE}`);
    } finally {
      disposeInputs(inputs);
      head.dispose();
      disposeWeights(weights);
    }
  });

  if (!['bert', 'roberta'].includes(family)) {
    test(`${family}: causal-LM logits match transformers within ${TOLERANCE} (real tokens)`, () => {
      const ref = readReference(family);
      const { config, weights } = loadFolder(path.join(TINY, family, 'causal-lm'));
      assert.equal(weights.has('lm_head.weight'), !config.tieWordEmbeddings, 'fixture: lm_head present exactly when untied');
      const backbone = createBackbone(config, weights);
      const head = createHead(backbone, 'causal-lm', 0, { seed: 0 });
      const inputs = inputsOf(ref);
      try {
        const logits = taskLogits(backbone, head, inputs, plainContext(weights, { training: false }));
        assert.deepEqual(logits.shape, [2, 8, config.vocabSize]);
        const diff = maxAbsDiffMasked(logits.arraySync() as number[][][], ref.causal_lm_logits!, ref.attention_mask);
        logits.dispose();
        assert.ok(diff < TOLERANCE, `${family} LM logits: max |diff| ${diff} >= ${TOLERANCE}`);
      } finally {
        disposeInputs(inputs);
        head.dispose();
        disposeWeights(weights);
      }
    });
  }
}

test('padding does not change the outputs at real tokens (each family)', () => {
  for (const family of FAMILIES) {
    const ref = readReference(family);
    const { config, weights } = loadFolder(path.join(TINY, family, 'seq-cls'));
    const backbone = createBackbone(config, weights);
    const ctx = plainContext(weights, { training: false });
    const length = ref.attention_mask[1].reduce((a, b) => a + b, 0);
    const [padded, alone] = tf.tidy(() => {
      const full = inputsOf(ref);
      const cut = (t: tf.Tensor2D) => tf.slice(t, [1, 0], [1, length]) as tf.Tensor2D;
      const short: ForwardInputs = { inputIds: cut(full.inputIds), attentionMask: cut(full.attentionMask),
        tokenTypeIds: full.tokenTypeIds ? cut(full.tokenTypeIds) : undefined };
      return [tf.slice(backbone.forward(full, ctx), [1, 0, 0], [1, length, -1]), backbone.forward(short, ctx)];
    });
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(padded, alone))).dataSync()[0]);
    tf.dispose([padded, alone]);
    disposeWeights(weights);
    assert.ok(diff < 1e-5, `${family}: padded vs unpadded max |diff| ${diff}`);
  }
});

test('forward passes and heads free every intermediate tensor', () => {
  for (const family of ['roberta', 'gemma']) {
    const ref = readReference(family);
    const { config, weights } = loadFolder(path.join(TINY, family, 'seq-cls'));
    const backbone = createBackbone(config, weights, { dropout: 0.2 });
    const head = createHead(backbone, 'classification', 3, { seed: 1 });
    const inputs = inputsOf(ref);
    const before = tf.memory().numTensors;
    for (const training of [false, true]) {
      const ctx = plainContext(weights, { training, rng: new Rng(3) });
      taskLogits(backbone, head, inputs, ctx).dispose();
      backbone.forward(inputs, ctx).dispose();
    }
    assert.equal(tf.memory().numTensors, before, `${family}: tensors before ${before}, after ${tf.memory().numTensors}`);
    disposeInputs(inputs);
    head.dispose();
    disposeWeights(weights);
  }
});

test('dropout: seeded in training, absent in evaluation, and training.dropout 0 turns it off', () => {
  const ref = readReference('bert');
  const { config, weights } = loadFolder(path.join(TINY, 'bert', 'seq-cls'));
  const inputs = inputsOf(ref);
  const run = (dropout: number | null, training: boolean, seed: number) => {
    const backbone = createBackbone(config, weights, { dropout });
    const out = backbone.forward(inputs, plainContext(weights, { training, rng: new Rng(seed) }));
    const values = Float32Array.from(out.dataSync());
    out.dispose();
    return values;
  };
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  const evalOut = run(null, false, 0);
  assert.ok(maxDiff(run(0.3, true, 5), evalOut) > 1e-2, 'training with dropout 0.3 should change the outputs');
  assert.equal(maxDiff(run(0.3, true, 5), run(0.3, true, 5)), 0, 'the same Rng seed gives the same dropout masks');
  assert.ok(maxDiff(run(0.3, true, 5), run(0.3, true, 6)) > 1e-2, 'another seed gives other masks');
  assert.equal(maxDiff(run(0, true, 5), evalOut), 0, 'dropout 0 in training equals evaluation');
  assert.equal(maxDiff(run(0.3, false, 5), evalOut), 0, 'evaluation ignores dropout');
  const backbone = createBackbone(config, weights, { dropout: 0.25 });
  assert.deepEqual(backbone.dropoutRates, { hidden: 0.25, attention: 0.25, classifier: 0.25 });
  assert.deepEqual(createBackbone(config, weights).dropoutRates, { hidden: 0.1, attention: 0.1, classifier: 0.1 });
  disposeInputs(inputs);
  disposeWeights(weights);
});

test('linearModules lists every backbone linear layer in forward order with its shape', () => {
  const bert = loadFolder(path.join(TINY, 'bert', 'seq-cls'));
  const bertModules = createBackbone(bert.config, bert.weights).linearModules();
  assert.deepEqual(bertModules.slice(0, 6).map((m) => [m.name, m.outFeatures, m.inFeatures, m.hasBias]), [
    ['bert.encoder.layer.0.attention.self.query', 32, 32, true],
    ['bert.encoder.layer.0.attention.self.key', 32, 32, true],
    ['bert.encoder.layer.0.attention.self.value', 32, 32, true],
    ['bert.encoder.layer.0.attention.output.dense', 32, 32, true],
    ['bert.encoder.layer.0.intermediate.dense', 64, 32, true],
    ['bert.encoder.layer.0.output.dense', 32, 64, true],
  ]);
  assert.equal(bertModules.length, 2 * 6 + 1);
  assert.equal(bertModules[12].name, 'bert.pooler.dense');
  disposeWeights(bert.weights);

  const roberta = loadFolder(path.join(TINY, 'roberta', 'seq-cls'));
  const robertaModules = createBackbone(roberta.config, roberta.weights).linearModules();
  assert.equal(robertaModules.length, 12, 'RobertaForSequenceClassification has no pooler');
  assert.ok(robertaModules.every((m) => m.name.startsWith('roberta.encoder.layer.')));
  disposeWeights(roberta.weights);

  for (const [family, qOut, kvOut, bias] of [['gemma', 64, 32, false], ['qwen2', 32, 16, true]] as const) {
    const { config, weights } = loadFolder(path.join(TINY, family, 'causal-lm'));
    const modules = createBackbone(config, weights).linearModules();
    assert.deepEqual(modules.slice(0, 7).map((m) => [m.name, m.outFeatures, m.inFeatures, m.hasBias]), [
      ['model.layers.0.self_attn.q_proj', qOut, 32, bias],
      ['model.layers.0.self_attn.k_proj', kvOut, 32, bias],
      ['model.layers.0.self_attn.v_proj', kvOut, 32, bias],
      ['model.layers.0.self_attn.o_proj', 32, qOut, false],
      ['model.layers.0.mlp.gate_proj', 64, 32, false],
      ['model.layers.0.mlp.up_proj', 64, 32, false],
      ['model.layers.0.mlp.down_proj', 32, 64, false],
    ]);
    assert.equal(modules.length, 14);
    disposeWeights(weights);
  }
});

test('new heads: N(0, initializer_range²) weights and zero biases from the seed; a checkpoint head of the wrong shape is replaced', () => {
  const { config, weights } = loadFolder(path.join(TINY, 'roberta', 'seq-cls'));
  const backbone = createBackbone(config, weights);
  // The checkpoint holds a 3-label head; 5 labels need a new out_proj, while classifier.dense (32 × 32) is reused.
  const head = createHead(backbone, 'classification', 5, { seed: 7 });
  const again = createHead(backbone, 'classification', 5, { seed: 7 });
  const outProj = head.trainable.get('classifier.out_proj.weight')!;
  assert.deepEqual(outProj.shape, [5, 32]);
  const values = Array.from(outProj.dataSync());
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  assert.ok(Math.abs(std - 0.02) < 0.005 && Math.abs(mean) < 0.005, `out_proj init: mean ${mean}, std ${std}; expected 0, 0.02`);
  assert.ok(head.trainable.get('classifier.out_proj.bias')!.dataSync().every((v) => v === 0), 'new bias is zero');
  assert.deepEqual(Array.from(again.trainable.get('classifier.out_proj.weight')!.dataSync()), Array.from(values), 'same seed, same init');
  assert.deepEqual(Array.from(head.trainable.get('classifier.dense.weight')!.dataSync()),
    Array.from(weights.get('classifier.dense.weight')!.dataSync()), 'a fitting checkpoint tensor is used as it is');
  assert.deepEqual([...head.trainable.keys()].sort(),
    ['classifier.dense.bias', 'classifier.dense.weight', 'classifier.out_proj.bias', 'classifier.out_proj.weight']);
  assert.throws(() => createHead(backbone, 'regression', 2, { seed: 0 }), /regression has one output/);
  assert.throws(() => createHead(backbone, 'causal-lm', 0, { seed: 0 }), LoraxsError);
  head.dispose();
  again.dispose();
  disposeWeights(weights);
});

test('a missing or misshapen tensor is refused with its name', () => {
  const { config, weights } = loadFolder(path.join(TINY, 'llama', 'causal-lm'));
  const v = weights.get('model.layers.1.self_attn.v_proj.weight')!;
  weights.delete('model.layers.1.self_attn.v_proj.weight');
  assert.throws(() => createBackbone(config, weights, { source: 'tiny/llama' }),
    (e: unknown) => e instanceof LoraxsError && /model\.layers\.1\.self_attn\.v_proj\.weight/.test(e.message) && e.place?.file === 'tiny/llama');
  weights.set('model.layers.1.self_attn.v_proj.weight', tf.zeros([17, 32]));
  assert.throws(() => createBackbone(config, weights), /shape \[17, 32\] but config.json implies \[16, 32\]/);
  v.dispose();
  disposeWeights(weights);
});

test('RoBERTa positions count real tokens from padding_idx + 1', () => {
  const ids = tf.tensor2d([[0, 5, 6, 2, 1, 1], [0, 7, 2, 1, 1, 1]], undefined, 'int32');
  const positions = robertaPositionIds(ids, 1);
  assert.deepEqual(positions.arraySync(), [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]]);
  tf.dispose([ids, positions]);
});

test('llama3 rope scaling keeps short wavelengths, slows long ones by factor, interpolates between (closed form)', () => {
  const scaling = { ropeType: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 };
  const inv = ropeInverseFrequencies({ headDim: 8, ropeTheta: 10000, ropeScaling: scaling });
  const base = [1, 0.1, 0.01, 0.001];
  // wavelength 2π/f: 6.28 (< 16/4: kept... no, 6.28 is between 4 and 16: interpolated), 62.8, 628, 6283 (> 16: / 8)
  const smooth = (16 / (2 * Math.PI) - 1) / (4 - 1);
  const expected = [(1 - smooth) * base[0] / 8 + smooth * base[0], base[1] / 8, base[2] / 8, base[3] / 8];
  inv.forEach((f, i) => assert.ok(Math.abs(f - expected[i]) <= 1e-6 * expected[i], `frequency ${i}: ${f} vs ${expected[i]}`));
  const linear = ropeInverseFrequencies({ headDim: 8, ropeTheta: 10000, ropeScaling: { ropeType: 'linear', factor: 4 } });
  linear.forEach((f, i) => assert.ok(Math.abs(f - base[i] / 4) <= 1e-6 * base[i], `linear ${i}: ${f}`));
});

test('gradients reach the key projection and the head on this backend and agree with finite differences', () => {
  // Key/k_proj sits behind attention, grouped-query repetition, RoPE, the norms and the head's pooling, so
  // every op of the forward pass must have a gradient kernel on the backend (tfjs lacks some on wasm).
  for (const family of FAMILIES) {
    const ref = readReference(family);
    const { config, weights } = loadFolder(path.join(TINY, family, 'seq-cls'));
    const backbone = createBackbone(config, weights);
    const head = createHead(backbone, 'classification', 3, { seed: 0 });
    const key = backbone.linearModules()[1];
    const delta = tf.variable(tf.zeros([key.outFeatures, key.inFeatures]));
    const base = plainContext(weights, { training: false });
    const ctx: ForwardContext = { ...base, linear: (name, x) => (name === key.name
      ? linearForward(x, tf.add(weights.get(`${name}.weight`)!, delta), weights.get(`${name}.bias`))
      : base.linear(name, x)) };
    const inputs = inputsOf(ref);
    const loss = () => tf.sum(tf.square(taskLogits(backbone, head, inputs, ctx))) as tf.Scalar;
    const { value, grads } = tf.variableGrads(loss, [delta, ...head.trainable.values()]);
    const direction = tf.tensor(new Rng(11).normalArray(key.outFeatures * key.inFeatures), delta.shape);
    const analytic = tf.tidy(() => tf.sum(tf.mul(grads[delta.name], direction)).dataSync()[0]);
    const eps = 2e-3;
    const at = (s: number) => { delta.assign(tf.mul(direction, s)); return tf.tidy(() => loss().dataSync()[0]); };
    const numeric = (at(eps) - at(-eps)) / (2 * eps);
    assert.ok(Math.abs(analytic) > 1e-3, `${family}: gradient along a random direction is ${analytic}`);
    assert.ok(Math.abs(analytic - numeric) <= 1e-2 * Math.abs(numeric), `${family}: analytic ${analytic} vs finite difference ${numeric}`);
    for (const [name, v] of head.trainable) assert.ok(grads[v.name] !== undefined, `${family}: no gradient for ${name}`);
    tf.dispose([value, direction, delta, ...Object.values(grads)]);
    disposeInputs(inputs);
    head.dispose();
    disposeWeights(weights);
  }
});
