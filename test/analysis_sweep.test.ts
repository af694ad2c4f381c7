/**
 * The ablation sweeps on tiny transformers checkpoints: fraction 1 reproduces the unablated metric
 * exactly and fraction 0 equals zeroing the module type's weights (both measured independently, on a
 * plain model session); a cancelled sweep resumes to what an uninterrupted one gives; the ΔW projection of
 * an adapter gives the adapted model at fraction 1 and the base model at fraction 0; the report files
 * have the promised shape.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { loadConfig } from '../sidecar/config/parse';
import { openModelSession } from '../sidecar/session/model_session';
import { readExamples } from '../sidecar/session/run_data';
import { evaluate } from '../sidecar/train/evaluation';
import { runAnalysis } from '../sidecar/analysis/analysis_run';
import { makeWorkspace } from './workspace';
import { tempDir } from './paths';
import type { AblationReport, SpectraReport } from '../sidecar/records';

process.env.LORAXS_CACHE_DIR ??= tempDir('loraxs-cache-');

const CLM_YAML = (targets: string) => `model: model
task: causal-lm
data: { train: train.tsv, validation: dev.tsv, text: sentence }
adapter: { rank: 4, targets: [${targets}] }
training: { batch_size: 8, max_length: 24 }
analysis: { fractions: [0, 0.5, 1], eval_limit: 12 }
`;

/** The causal-LM loss of the dev set on a plain session, with some weights replaced by zeros. */
async function plainLoss(model: string, config: ReturnType<typeof loadConfig>, zeroed: string[], limit: number): Promise<number> {
  const s = await openModelSession({ modelDir: model, task: 'causal-lm', numLabels: 1, adapter: null, seed: 0, dropout: null });
  try {
    for (const name of zeroed) {
      const w = s.backbone.weights.get(name)!;
      s.backbone.weights.set(name, tf.zerosLike(w));
      w.dispose();
    }
    const ex = readExamples(config, config.data!.validation!, s.tokenizer).examples.slice(0, limit);
    return evaluate(s, ex, 'causal-lm', config.training.batchSize, s.tokenizer.padId).loss;
  } finally {
    s.dispose();
  }
}

test('retention on tiny llama: fraction 1 = the unablated loss exactly, fraction 0 = the module zeroed, per layer too', async () => {
  await initBackend();
  const ws = makeWorkspace('llama', 'causal-lm', { dev: 16 });
  const config = loadConfig(ws.config('r', CLM_YAML('q_proj, down_proj')));
  const report = await runAnalysis(config, { kind: 'retention', perLayer: true }) as AblationReport;
  assert.equal(report.kind, 'retention');
  assert.equal(report.metric, 'loss');
  assert.equal(report.evalExamples, 12);
  assert.deepEqual(report.layers, [0, 1]);
  // 2 module types × (all + 2 layers) × 3 fractions × 3 regions
  assert.equal(report.results.length, 2 * 3 * 3 * 3);
  const baseline = await plainLoss(ws.model, config, [], 12);
  assert.equal(report.baseline, baseline);
  for (const row of report.results.filter((r) => r.fraction === 1)) assert.equal(row.value, baseline, JSON.stringify(row));
  for (const type of ['q_proj', 'down_proj']) {
    for (const layer of [null, 0, 1]) {
      const names = [0, 1].filter((l) => layer === null || l === layer).map((l) => `model.layers.${l}.${type === 'q_proj' ? 'self_attn' : 'mlp'}.${type}.weight`);
      const zeroed = await plainLoss(ws.model, config, names, 12);
      const rows = report.results.filter((r) => r.module === type && r.layer === layer && r.fraction === 0);
      assert.equal(rows.length, 3);
      for (const r of rows) assert.ok(Math.abs(r.value - zeroed) <= 1e-6 * Math.abs(zeroed), `${type} layer ${layer}: ${r.value} vs zeroed ${zeroed}`);
      assert.ok(Math.abs(zeroed - baseline) > 1e-4, `zeroing ${type} must change the loss (${zeroed} vs ${baseline})`);
    }
  }
  const half = report.results.filter((r) => r.layer === null && r.fraction === 0.5);
  assert.equal(new Set(half.map((r) => r.value)).size > 1, true, 'top, middle and bottom halves should differ');
  // Files: JSON as returned, CSV with a header and one line per row.
  const dir = path.join(config.output, 'analysis');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'retention.json'), 'utf8')).results, report.results);
  const csv = fs.readFileSync(path.join(dir, 'retention.csv'), 'utf8').trim().split('\n');
  assert.equal(csv[0], 'module,layer,region,fraction,value');
  assert.equal(csv.length, report.results.length + 1);
  assert.match(csv[1], /^q_proj,,top,0,/);
});

test('a cancelled retention sweep resumes from its cache to the uninterrupted result', async () => {
  await initBackend();
  const ws = makeWorkspace('llama', 'causal-lm', { dev: 12 });
  const config = loadConfig(ws.config('c', CLM_YAML('v_proj, up_proj')));
  const signal = { aborted: false };
  let measured = 0;
  const partial = await runAnalysis(config, { kind: 'retention' }, { progress: (phase) => { if (phase === 'retention' && ++measured === 4) signal.aborted = true; } }, signal) as AblationReport;
  assert.equal(partial.cancelled, true);
  assert.ok(partial.results.length < 2 * 3 * 3, `${partial.results.length} rows`);
  let evaluations = 0;
  let first: number | null = null;
  const resumed = await runAnalysis(config, { kind: 'retention' }, {
    progress: (phase, done) => { if (phase === 'retention') { first ??= done; evaluations++; } },
  }) as AblationReport;
  assert.equal(resumed.cancelled, false);
  assert.ok(first! >= 3, `the resumed sweep should start with the cached cells done, started at ${first}`);
  const fresh = loadConfig(ws.config('f', CLM_YAML('v_proj, up_proj') + 'output: fresh\n'));
  const whole = await runAnalysis(fresh, { kind: 'retention' }) as AblationReport;
  assert.deepEqual(resumed.results, whole.results);
  assert.ok(evaluations > 0);
});

test('ΔW projection of an adapter: fraction 1 = the adapted model, fraction 0 = the base model; spectra and ΔW ratios', async () => {
  await initBackend();
  const ws = makeWorkspace('llama', 'causal-lm', { dev: 12 });
  const config = loadConfig(ws.config('d', CLM_YAML('q_proj, gate_proj')));
  // An adapter with a large R, so it changes the loss a lot.
  const adapterDir = path.join(ws.dir, 'adapter');
  const s = await openModelSession({ modelDir: ws.model, task: 'causal-lm', numLabels: 1, seed: 3, dropout: null,
    adapter: { ...config.adapter, initStd: 1.0, alpha: 16, svd: { ...config.adapter.svd, method: 'exact' } } });
  let adapted: number;
  try {
    s.adapters!.save(adapterDir, { head: s.head, task: 'causal-lm', labelNames: null, numLabels: 1, eval: null, modelDir: ws.model });
    const ex = readExamples(config, config.data!.validation!, s.tokenizer).examples.slice(0, 12);
    adapted = evaluate(s, ex, 'causal-lm', 8, s.tokenizer.padId).loss;
  } finally {
    s.dispose();
  }
  const base = await plainLoss(ws.model, config, [], 12);
  assert.ok(Math.abs(adapted - base) > 1e-3, `the adapter must change the loss (${adapted} vs ${base})`);
  const report = await runAnalysis(config, { kind: 'delta', adapterDir, fractions: [0, 0.25, 1] }) as AblationReport;
  assert.equal(report.kind, 'delta');
  assert.ok(Math.abs(report.baseline - adapted) < 1e-5, `baseline ${report.baseline} vs adapted ${adapted}`);
  for (const r of report.results.filter((x) => x.fraction === 1)) assert.equal(r.value, report.baseline);
  // Fraction 0 puts the base weights back for that module type only; with both types at 0 it would be `base`.
  for (const r of report.results.filter((x) => x.fraction === 0)) assert.ok(Number.isFinite(r.value) && r.value !== report.baseline);
  // ΔW of LoRA-XS (exact factors) lies in W's top-r subspaces (r = 4 ≤ a quarter of min(m, n) = 32): keeping
  // the top quarter keeps all of it; the bottom quarter removes it (the base weight, up to rounding).
  for (const r of report.results.filter((x) => x.fraction === 0.25 && x.region === 'top')) {
    assert.ok(Math.abs(r.value - report.baseline) < 1e-4, `${r.module} top 25%: ${r.value} vs ${report.baseline}`);
  }
  for (const r of report.results.filter((x) => x.fraction === 0.25 && x.region === 'bottom')) {
    const zero = report.results.find((x) => x.module === r.module && x.fraction === 0)!;
    assert.ok(Math.abs(r.value - zero.value) < 1e-4, `${r.module} bottom 25%: ${r.value} vs base weight ${zero.value}`);
  }
  const spectra = await runAnalysis(config, { kind: 'spectra', adapterDir }) as SpectraReport;
  assert.equal(spectra.entries.length, 4);
  for (const e of spectra.entries) {
    assert.equal(e.singularValues.length, Math.min(e.outFeatures, e.inFeatures));
    assert.ok(e.energyAtRank > 0 && e.energyAtRank < 1);
    assert.ok(e.deltaRatio! > 0);
  }
});

test('fraction 0 of every module type at once equals the base model (delta, one type set)', async () => {
  await initBackend();
  const ws = makeWorkspace('llama', 'causal-lm', { dev: 8 });
  const config = loadConfig(ws.config('e', CLM_YAML('q_proj')));
  const adapterDir = path.join(ws.dir, 'adapter');
  const s = await openModelSession({ modelDir: ws.model, task: 'causal-lm', numLabels: 1, seed: 4, dropout: null, adapter: { ...config.adapter, initStd: 1.0 } });
  try {
    s.adapters!.save(adapterDir, { head: s.head, task: 'causal-lm', labelNames: null, numLabels: 1, eval: null, modelDir: ws.model });
  } finally {
    s.dispose();
  }
  const base = await plainLoss(ws.model, config, [], 8);
  const report = await runAnalysis(config, { kind: 'delta', adapterDir, fractions: [0, 1], regions: ['top'] }) as AblationReport;
  const zero = report.results.find((r) => r.fraction === 0)!;
  assert.ok(Math.abs(zero.value - base) < 1e-5, `fraction 0 ${zero.value} vs base ${base}`);
});

test('classification without a trained head is refused with a placed error', async () => {
  await initBackend();
  const ws = makeWorkspace('llama', 'seq-cls', { dev: 8 });
  const config = loadConfig(ws.config('h', `model: model
task: classification
data: { train: train.tsv, validation: dev.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [q_proj] }
`));
  // The seq-cls fixture holds a 3-class score head: usable as a "fine-tuned" checkpoint.
  const ok = await runAnalysis(config, { kind: 'retention', fractions: [1], regions: ['top'] }) as AblationReport;
  assert.equal(ok.metric, 'accuracy');
  const clm = makeWorkspace('llama', 'causal-lm', { dev: 8 });
  const bad = loadConfig(clm.config('b', `model: model
task: classification
data: { train: train.tsv, validation: dev.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [q_proj] }
`));
  await assert.rejects(runAnalysis(bad, { kind: 'retention' }), /need a trained head.*--adapter/);
});
