/**
 * The memory budget (sidecar/backend/memory_budget.ts) and micro-batches sized from it
 * (sidecar/train/micro_batches.ts): where the budget comes from (config, environment, cgroup v1/v2, RAM),
 * the one-line refusal before loading a model that does not fit, and training split into micro-batches by
 * a tight budget giving the losses of whole batches (with dropout, and with gradient checkpointing).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cgroupMemoryLimit, memoryBudget, DEFAULT_MEMORY_SHARE } from '../sidecar/backend/memory_budget';
import { planMicroBatches, splitIndices, wasmTransientBytes } from '../sidecar/train/micro_batches';
import { readModelConfig } from '../sidecar/io/model_config';
import { cliRunner, tinyBertConfig } from './cli_harness';
import { makeWorkspace } from './workspace';
import { fixtures, tempDir } from './paths';

const loraxs = cliRunner('memory');
const GiB = 1024 ** 3;

test('cgroup limits: v2 memory.max (a number or "max"), v1 limit_in_bytes ("unlimited" is 2^63 rounded), none', () => {
  const v2 = tempDir('cg2-');
  fs.writeFileSync(path.join(v2, 'memory.max'), '8589934592\n');
  assert.equal(cgroupMemoryLimit(v2), 8 * GiB);
  fs.writeFileSync(path.join(v2, 'memory.max'), 'max\n');
  assert.equal(cgroupMemoryLimit(v2), null);
  const v1 = tempDir('cg1-');
  fs.mkdirSync(path.join(v1, 'memory'));
  fs.writeFileSync(path.join(v1, 'memory', 'memory.limit_in_bytes'), '2147483648\n');
  assert.equal(cgroupMemoryLimit(v1), 2 * GiB);
  fs.writeFileSync(path.join(v1, 'memory', 'memory.limit_in_bytes'), '9223372036854771712\n');
  assert.equal(cgroupMemoryLimit(v1), null);
  assert.equal(cgroupMemoryLimit(tempDir('cg0-')), null);
});

test('the budget: config key, then LORAXS_MEMORY_BUDGET_GB, then a share of the cgroup limit or the RAM; a bad variable is one line', () => {
  const v2 = tempDir('cg2-');
  fs.writeFileSync(path.join(v2, 'memory.max'), String(2 * GiB));
  assert.deepEqual(memoryBudget(3, { LORAXS_MEMORY_BUDGET_GB: '5' }, v2), { bytes: 3 * GiB, source: 'compute.memory_budget_gb' });
  assert.deepEqual(memoryBudget(undefined, { LORAXS_MEMORY_BUDGET_GB: '5' }, v2), { bytes: 5 * GiB, source: 'LORAXS_MEMORY_BUDGET_GB' });
  const limited = memoryBudget(undefined, {}, v2);
  assert.equal(limited.bytes, Math.floor(Math.min(2 * GiB, os.totalmem()) * DEFAULT_MEMORY_SHARE));
  if (2 * GiB < os.totalmem()) assert.match(limited.source, /cgroup limit of 2\.00 GB/);
  const ram = memoryBudget(undefined, {}, tempDir('cg0-'));
  assert.equal(ram.bytes, Math.floor(os.totalmem() * DEFAULT_MEMORY_SHARE));
  assert.match(ram.source, /of RAM/);
  assert.throws(() => memoryBudget(undefined, { LORAXS_MEMORY_BUDGET_GB: 'lots' }), (e: Error) =>
    /LORAXS_MEMORY_BUDGET_GB=lots is not a positive number of GB/.test(e.message) && !e.message.includes('\n'));
});

test('micro-batch plan: whole batches under a large budget, fewer rows as the budget shrinks, fewer still without checkpointing', () => {
  const config = readModelConfig(path.join(fixtures, 'tiny', 'llama', 'seq-cls'));
  const dropout = { hidden: 0, attention: 0, classifier: 0 };
  const plan = (gb: number, checkpointing: boolean, seqLen = 512) => planMicroBatches({
    budgetBytes: gb * GiB, weightBytes: 0.5 * GiB, config: { ...config, numLayers: 24, hiddenSize: 896, intermediateSize: 4864, numHeads: 14, numKvHeads: 2, headDim: 64 },
    seqLen, batchSize: 64, checkpointing, dropout, causalLm: false,
  });
  assert.equal(plan(4000, false).rows, 64);
  const rows = [16, 4, 2].map((gb) => plan(gb, true).rows);
  assert.ok(rows[0] > rows[1] && rows[1] >= rows[2] && rows[2] >= 1, `rows ${rows}`);
  assert.ok(plan(4, false).rows < plan(4, true).rows, 'checkpointing fits more rows');
  assert.equal(plan(0.6, true).overBudget, true);
  assert.deepEqual(splitIndices([5, 3, 9, 1, 7], 2), [[5, 3], [9, 1], [7]]);
});

// wasm: the largest weight is held twice more while multiplied (a transposed copy and XNNPACK's packed
// copy); Qwen2-0.5B's tied 151936 × 896 output matrix (544 MB) leaves a causal LM no room in the 4 GB heap.
test('micro-batch plan on wasm leaves room for the copies of the largest weight a product makes', () => {
  const config = readModelConfig(path.join(fixtures, 'tiny', 'llama', 'seq-cls'));
  const qwen2 = { ...config, numLayers: 24, hiddenSize: 896, intermediateSize: 4864, numHeads: 14, numKvHeads: 2, headDim: 64, vocabSize: 151936 };
  const dropout = { hidden: 0, attention: 0, classifier: 0 };
  const embedding = 4 * 151936 * 896;
  assert.equal(wasmTransientBytes(embedding), 2 * embedding);
  const plan = (transientBytes: number, gb = 4) => planMicroBatches({
    budgetBytes: gb * GiB, weightBytes: 1.98e9, config: qwen2, seqLen: 256, batchSize: 8, checkpointing: true, dropout, causalLm: true, transientBytes,
  });
  assert.equal(plan(0, 8).activationBudget - plan(wasmTransientBytes(embedding), 8).activationBudget, 2 * embedding);
  assert.equal(plan(0).overBudget, false, 'without the copies it would seem to fit');
  assert.equal(plan(wasmTransientBytes(embedding)).overBudget, true, 'Qwen2-0.5B causal LM does not fit the wasm heap');
});

test('a model that does not fit the budget is refused before loading, in one line naming its size and the budget', () => {
  const ws = makeWorkspace('bert', 'seq-cls');
  const cfg = ws.config('tight', tinyBertConfig().replace('output: out', 'compute:\n  memory_budget_gb: 0.000001\noutput: out'));
  const r = loraxs(['train', cfg]);
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trim().split('\n').filter((l) => /budget/.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /does not fit the memory budget: its weights take 0\.\d\d GB as float32 .* above the budget of 0\.00 GB \(compute\.memory_budget_gb\)\. Raise compute\.memory_budget_gb/);
  assert.ok(!fs.existsSync(path.join(ws.dir, 'out', 'metrics.jsonl')), 'nothing was trained');
  const bad = loraxs(['train', ws.config('neg', tinyBertConfig().replace('output: out', 'compute:\n  memory_budget_gb: -2\noutput: out'))]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /neg\.loraxs\.yaml:15:\d+: .*memory_budget_gb/);
});

/** Per-update losses of metrics.jsonl. */
function losses(dir: string): number[] {
  return fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss?: number })
    .filter((x) => x.loss !== undefined).map((x) => x.loss!);
}

test('a budget too small for whole batches trains in micro-batches with the losses of whole batches; checkpointing keeps them with dropout', () => {
  const ws = makeWorkspace('bert', 'seq-cls');
  // Under 0.76 GB the tiny model leaves about 10 MB for activations once the runtime's 0.75 GB is kept.
  const run = (name: string, dropout: number, compute: string) => {
    const config = tinyBertConfig().replace('  epochs: 1', `  epochs: 1\n  dropout: ${dropout}\n  max_length: 32`)
      .replace('output: out', `compute:\n${compute}output: ${name}`);
    const r = loraxs(['train', ws.config(name, config)]);
    assert.equal(r.code, 0, r.stderr);
    return { log: r.stderr + r.stdout, losses: losses(path.join(ws.dir, name)) };
  };
  const close = (a: number[], b: number[], what: string) => {
    assert.equal(a.length, 3, what);
    assert.equal(b.length, a.length, what);
    a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= 1e-5 * Math.abs(x), `${what}, update ${i + 1}: ${b[i]} vs ${x}`));
  };
  // Without dropout the split cannot change the update: the same losses (and so the same R) at every step.
  const whole = run('whole', 0, '  memory_budget_gb: 64\n');
  const split = run('split', 0, '  memory_budget_gb: 0.76\n');
  assert.match(whole.log, /memory: budget (64\.00 GB \(compute\.memory_budget_gb\)|4\.00 GB \(the wasm backend's heap\)); activations about [\d.]+ KB per token per layer \(no gradient checkpointing\).*whole batches of 16/);
  assert.match(split.log, /micro-batches of [1-9] rows \(batch_size 16\)/);
  close(whole.losses, split.losses, 'micro-batches vs whole batches');
  // With dropout (whole batches both), checkpointing replays the same masks: the same losses.
  const dropped = run('dropped', 0.1, '  memory_budget_gb: 64\n  gradient_checkpointing: true\n');
  const droppedPlain = run('dropped-plain', 0.1, '  memory_budget_gb: 64\n');
  assert.match(dropped.log, /gradient checkpointing on/);
  close(droppedPlain.losses, dropped.losses, 'checkpointing vs plain tape with dropout');
  assert.ok(Math.abs(droppedPlain.losses[0] - whole.losses[0]) > 1e-6, 'dropout changed the loss (the masks matter)');
});
