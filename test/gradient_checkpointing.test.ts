/**
 * Gradient checkpointing per transformer block (sidecar/models/checkpointed_block.ts,
 * `compute.gradient_checkpointing`): on the tiny fixtures of the encoder and decoder families, with an
 * adapter on every linear layer, a trainable head and dropout on, the R and head gradients equal those
 * of the plain tape within fp32 tolerance; R gradients agree with central finite differences with and
 * without checkpointing; the tape keeps fewer bytes; and no tensor is leaked. Runs on the backend the test
 * runner pins (wasm, or native with LORAXS_BACKEND=tensorflow).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { Rng } from '../sidecar/rng';
import { readModelConfig } from '../sidecar/io/model_config';
import { readSafetensorsHeader, readTensorFloat32 } from '../sidecar/io/safetensors';
import { createBackbone } from '../sidecar/models/registry';
import { createHead } from '../sidecar/models/heads';
import { taskLogits } from '../sidecar/models/task_model';
import { adaptedContext, createAdaptedModule, type AdaptedModule } from '../sidecar/loraxs/adapted_context';
import type { ForwardInputs, Weights } from '../sidecar/models/types';
import { fixtures } from './paths';

const TINY = path.join(fixtures, 'tiny');
const FAMILIES = ['bert', 'roberta', 'llama', 'qwen2'];
/** Dropout on hidden states and attention probabilities, so the recomputation must replay the masks. */
const DROPOUT = 0.2;

interface Setup {
  weights: Weights;
  adapters: Map<string, AdaptedModule>;
  loss(checkpointing: boolean): tf.Scalar;
  variables: tf.Variable[];
  dispose(): void;
}

function setUp(family: string): Setup {
  const dir = path.join(TINY, family, 'seq-cls');
  const config = readModelConfig(dir);
  const header = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
  const weights: Weights = new Map();
  for (const [name, entry] of header.tensors) weights.set(name, tf.tensor(readTensorFloat32(header, name), entry.shape));
  const backbone = createBackbone(config, weights, { dropout: DROPOUT });
  const head = createHead(backbone, 'classification', 3, { seed: 1 });
  // Random factors and a non-zero R on every linear layer, so every block's gradient is non-trivial.
  const rng = new Rng(7);
  const rank = 3;
  const adapters = new Map<string, AdaptedModule>();
  for (const m of backbone.linearModules()) {
    const factors = { rank, outFeatures: m.outFeatures, inFeatures: m.inFeatures, sigma: new Float32Array(0),
      A: rng.normalArray(rank * m.inFeatures, 0.3), B: rng.normalArray(m.outFeatures * rank, 0.3) };
    adapters.set(m.name, createAdaptedModule(m.name, factors, rng.normalArray(rank * rank, 0.5), 2 * rank));
  }
  const inputs: ForwardInputs = {
    inputIds: tf.tensor2d([[2, 5, 9, 11, 4, 3], [2, 7, 8, 3, 0, 0]], undefined, 'int32'),
    attentionMask: tf.tensor2d([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], undefined, 'int32'),
  };
  const target = tf.tensor2d([[0.3, -1, 2], [1.5, 0.2, -0.7]]);
  const loss = (checkpointing: boolean): tf.Scalar => tf.tidy(() => {
    // The same dropout seeds on every call: the loss is a deterministic function of the variables.
    const ctx = adaptedContext(weights, adapters, { training: true, rng: new Rng(99), extra: head.trainable as Map<string, tf.Tensor>,
      gradientCheckpointing: checkpointing });
    return tf.sum(tf.square(tf.sub(taskLogits(backbone, head, inputs, ctx), target))) as tf.Scalar;
  });
  return {
    weights, adapters, loss,
    variables: [...[...adapters.values()].map((a) => a.R), ...head.trainable.values()],
    dispose() {
      tf.dispose([inputs.inputIds, inputs.attentionMask, target]);
      for (const a of adapters.values()) tf.dispose([a.A, a.B, a.R]);
      head.dispose();
      for (const t of weights.values()) t.dispose();
    },
  };
}

/** Gradients by variable name, read back, and the bytes the engine held when the forward pass ended. */
function gradientsOf(s: Setup, checkpointing: boolean): { loss: number; grads: Map<string, Float32Array>; tapeBytes: number } {
  const before = tf.memory().numBytes;
  let tapeBytes = 0;
  const { value, grads } = tf.variableGrads(() => {
    const l = s.loss(checkpointing);
    tapeBytes = tf.memory().numBytes - before;
    return l;
  }, s.variables);
  const out = new Map<string, Float32Array>();
  for (const v of s.variables) {
    assert.ok(grads[v.name], `${v.name} receives a gradient (checkpointing ${checkpointing})`);
    out.set(v.name, grads[v.name].dataSync() as Float32Array);
  }
  const loss = value.dataSync()[0];
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: out, tapeBytes };
}

test('checkpointed blocks give the same loss and R/head gradients as the plain tape, keep less and leak nothing', async () => {
  await initBackend();
  for (const family of FAMILIES) {
    const s = setUp(family);
    try {
    const tensorsBefore = tf.memory().numTensors;
    const plain = gradientsOf(s, false);
    const tensorsAfterPlain = tf.memory().numTensors;
    const ckpt = gradientsOf(s, true);
    assert.equal(tf.memory().numTensors, tensorsAfterPlain, `${family}: checkpointing leaks no tensor`);
    assert.equal(tensorsAfterPlain, tensorsBefore, `${family}: the plain tape leaks no tensor`);
    assert.ok(Math.abs(plain.loss - ckpt.loss) <= 1e-6 * Math.abs(plain.loss), `${family}: loss ${ckpt.loss} vs ${plain.loss}`);
    let worst = 0;
    let scale = 0;
    for (const [name, g] of plain.grads) {
      const h = ckpt.grads.get(name)!;
      g.forEach((v, i) => {
        worst = Math.max(worst, Math.abs(v - h[i]));
        scale = Math.max(scale, Math.abs(v));
      });
    }
    assert.ok(scale > 1e-3, `${family}: gradients are not trivial (max |g| = ${scale})`);
    assert.ok(worst <= 1e-5 * scale, `${family}: max |g_ckpt - g_plain| = ${worst} (max |g| ${scale})`);
    // The plain tape keeps every block's activations; the checkpointed one keeps each block's input.
    assert.ok(ckpt.tapeBytes < plain.tapeBytes, `${family}: tape ${ckpt.tapeBytes} B with checkpointing vs ${plain.tapeBytes} B without`);
    } finally {
      s.dispose();
    }
  }
});

test('R gradients agree with central finite differences with and without checkpointing (first and last block)', async () => {
  await initBackend();
  for (const family of FAMILIES) {
    const s = setUp(family);
    try {
    const names = [...s.adapters.keys()];
    // The first block's query/q_proj (its gradient crosses every later block) and the last block's last module.
    for (const name of [names[0], names[names.length - 1]]) {
      const R = s.adapters.get(name)!.R;
      const r0 = R.clone();
      const direction = tf.tensor(new Rng(3).normalArray(R.size), R.shape);
      for (const checkpointing of [false, true]) {
        const { grads } = gradientsOf(s, checkpointing);
        const g = grads.get(R.name)!;
        const d = direction.dataSync();
        const analytic = g.reduce((acc, v, i) => acc + v * d[i], 0);
        const eps = 1e-2;
        const at = (step: number): number => {
          R.assign(tf.tidy(() => tf.add(r0, tf.mul(direction, step))));
          return tf.tidy(() => s.loss(checkpointing).dataSync()[0]);
        };
        const numeric = (at(eps) - at(-eps)) / (2 * eps);
        R.assign(r0);
        assert.ok(Math.abs(numeric) > 1e-3, `${family} ${name}: the loss moves along the direction (${numeric})`);
        assert.ok(Math.abs(analytic - numeric) <= 1e-2 * Math.abs(numeric),
          `${family} ${name} (checkpointing ${checkpointing}): analytic ${analytic} vs finite difference ${numeric}`);
      }
      tf.dispose([r0, direction]);
    }
    } finally {
      s.dispose();
    }
  }
});
