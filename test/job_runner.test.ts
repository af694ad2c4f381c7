/**
 * The one job runner (sidecar/engine/jobs.ts) seen from both front ends, as users run them: the `loraxs`
 * CLI spawned as its own process, and the sidecar's `loraxs/train` request over the real LSP stream.
 * - the same bad config gives the same placed error text (`file:line:col: message`) from both;
 * - the same config warnings reach both (stderr lines; log notifications);
 * - every line the engine writes to metrics.jsonl validates against the published JSON Schema
 *   (sidecar/metrics_line.schema.json), and the training panel's state, rebuilt from metrics.jsonl as
 *   after a window reload, marks as best the evaluation the engine named in its `best` line, also in a
 *   regression run whose best Pearson is not its lowest loss (MSE).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EvalRequest, TrainProgressNotification, TrainRequest } from '../sidecar/protocol';
import type { MetricsRecord } from '../sidecar/records';
import { isBestRecord, isEvalRecord } from '../sidecar/records';
import { applyUpdate, emptyState } from '../webview/training_runs';
import { GOOD_CONFIG, makeWorkspace as makeLspWorkspace, withSidecar } from './lsp_harness';
import { makeWorkspace, WORDS } from './workspace';
import { cliRunner } from './cli_harness';
import { readValidatedMetrics } from './metrics_schema';


const loraxs = cliRunner('jobs');

/** The error line the CLI printed, without its `loraxs train: error: ` prefix. */
function cliError(stderr: string): string {
  const line = stderr.split('\n').find((l) => l.startsWith('loraxs train: error: '));
  assert.ok(line, `an error line on stderr:\n${stderr}`);
  return line.slice('loraxs train: error: '.length);
}

test('the same bad config gives the same placed error from `loraxs train` (spawned) and from loraxs/train', async () => {
  const ws = makeLspWorkspace();
  const cases = {
    // Found by the schema while parsing.
    'no-task': GOOD_CONFIG.replace('task: classification\n', ''),
    // Found only once the model is open (the targets match no module): placed at the key afterwards.
    'no-target': GOOD_CONFIG.replace('    - query\n    - value\n', '    - nosuch_module\n'),
    // A rank above a module's smaller dimension, found while resolving targets.
    'big-rank': GOOD_CONFIG.replace('rank: 4', 'rank: 4096'),
  };
  const configs = Object.entries(cases).map(([name, text]) => ({ name, ...ws.config(name, text) }));
  const fromCli = configs.map((c) => {
    const r = loraxs(['train', c.file], ws.dir);
    assert.equal(r.code, 1, `${c.name}: exit 1\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, `${c.name}: no stack trace`);
    return cliError(r.stderr);
  });
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    for (const [i, c] of configs.entries()) {
      const message = await s.conn.sendRequest(TrainRequest.type, { uri: c.uri }).then(() => 'resolved', (e: Error) => e.message);
      assert.equal(message, fromCli[i], `${c.name}: the same text from both front ends`);
      assert.match(message, new RegExp(`^${c.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `), `${c.name}: placed at file:line:col`);
    }
  });
});

test('config warnings reach both front ends: stderr of `loraxs train` and the log notifications of loraxs/train', async () => {
  const ws = makeLspWorkspace();
  const { uri, file } = ws.config('repeat', GOOD_CONFIG.replace('    - value\n', '    - value\n    - query\n'));
  const r = loraxs(['train', file], ws.dir);
  assert.equal(r.code, 0, r.stderr);
  const cliWarnings = r.stderr.split('\n').filter((l) => l.includes(': warning: '));
  assert.ok(cliWarnings.some((l) => l.startsWith(`${file}:`) && l.includes("adapter.targets repeats 'query'")), `a placed warning on stderr:\n${r.stderr}`);
  fs.rmSync(path.join(ws.dir, 'runs'), { recursive: true, force: true });
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const progress = s.collect(TrainProgressNotification.type);
    await s.conn.sendRequest(TrainRequest.type, { uri });
    const logged = progress.flatMap((p) => (p.kind === 'log' && p.message.includes(': warning: ') ? [p.message] : []));
    assert.deepEqual(logged, cliWarnings);
    const started = progress.find((p) => p.kind === 'started');
    assert.ok(started && started.kind === 'started' && started.config === file, 'the run names itself with its config first');
    assert.equal(progress.indexOf(started), 0, 'started is the first notification of the run');
  });
});

/** Sentences scored by their share of positive words: a regression target in [0, 5]. */
function regressionRows(n: number, seed: number): string {
  let x = seed >>> 0;
  const next = (): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 4294967296;
  };
  const positive = new Set(['good', 'great', 'fun', 'love', 'funny', 'smart', 'warm', 'bright', 'best', 'laugh']);
  const rows = ['sentence\tscore'];
  for (let i = 0; i < n; i++) {
    const words = Array.from({ length: 3 + Math.floor(next() * 6) }, () => (next() < 0.3 ? [...positive][Math.floor(next() * 10)] : WORDS[Math.floor(next() * WORDS.length)]));
    const score = (5 * words.filter((w) => positive.has(w)).length) / words.length;
    rows.push(`${words.join(' ')}\t${score.toFixed(3)}`);
  }
  return rows.join('\n') + '\n';
}

test('metrics.jsonl lines match the schema; after a reload the panel marks the engine\'s best, also where best Pearson is not lowest MSE', () => {
  const ws = makeWorkspace('bert', 'seq-cls');
  ws.write('reg-train.tsv', regressionRows(64, 3));
  ws.write('reg-dev.tsv', regressionRows(24, 4));
  const file = ws.config('reg', `model: model
task: regression
data:
  train: reg-train.tsv
  validation: reg-dev.tsv
  text: sentence
  label: score
adapter:
  rank: 4
  targets: [query, value, dense]
training:
  epochs: 4
  batch_size: 8
  lr: 0.05
  eval_every: 2
  seed: 0
output: runs/reg
`);
  const r = loraxs(['train', file], ws.dir);
  assert.equal(r.code, 0, r.stderr);
  const records = readValidatedMetrics<MetricsRecord>(path.join(ws.dir, 'runs', 'reg', 'metrics.jsonl'));
  const trained = records.filter(isEvalRecord).filter((e) => !e.baseline);
  const bestLines = records.filter(isBestRecord);
  assert.ok(trained.length >= 3 && bestLines.length >= 1, `${trained.length} evaluations, ${bestLines.length} best lines`);
  assert.ok(bestLines.every((b) => b.best.metric === 'pearson' && b.best.higher_is_better), 'regression is ranked by Pearson');
  const byPearson = trained.reduce((a, b) => (b.eval.pearson > a.eval.pearson ? b : a));
  const byMse = trained.reduce((a, b) => (b.eval.mse < a.eval.mse ? b : a));
  assert.equal(bestLines.at(-1)!.step, byPearson.step, 'the last best line names the highest-Pearson evaluation');
  // The case a guess from the loss would get wrong. If training numerics change, pick settings that keep it.
  assert.notEqual(byPearson.step, byMse.step, `this run's best Pearson (step ${byPearson.step}) is not its lowest MSE (step ${byMse.step})`);

  const state = emptyState();
  applyUpdate(state, { type: 'load', runId: 'saved:reg', title: 'reg', output: path.join(ws.dir, 'runs', 'reg'), records }, 0);
  const marked = state.runs[0].evals.filter((e) => e.best);
  assert.deepEqual(marked.map((e) => e.record.step), [byPearson.step]);
});

test('evaluation is a job too: loraxs/eval and `loraxs eval` give the same metrics, for the base model and for an adapter', async () => {
  const ws = makeLspWorkspace();
  const { uri, file } = ws.config('ev', GOOD_CONFIG);
  const trained = loraxs(['train', file], ws.dir);
  assert.equal(trained.code, 0, trained.stderr);
  const adapterDir = path.join(ws.dir, 'runs', 'ev');
  const fromCli = (extra: string[]): Record<string, number> => {
    const r = loraxs(['eval', file, '--json', ...extra], ws.dir);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const baseCli = fromCli([]);
  const adaptedCli = fromCli(['--adapter', adapterDir]);
  assert.ok(typeof baseCli.accuracy === 'number' && typeof adaptedCli.accuracy === 'number', JSON.stringify({ baseCli, adaptedCli }));
  assert.notDeepEqual(adaptedCli, baseCli, 'the adapter was scored, not the base model again');
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const progress = s.collect(TrainProgressNotification.type);
    const base = await s.conn.sendRequest(EvalRequest.type, { uri });
    assert.deepEqual(base.metrics, baseCli, 'the base model scores the same in both front ends');
    const adapted = await s.conn.sendRequest(EvalRequest.type, { uri, adapterDir });
    assert.deepEqual(adapted.metrics, adaptedCli, 'the adapter scores the same in both front ends');
    const started = progress.filter((p) => p.kind === 'started');
    assert.deepEqual(started.map((p) => p.kind === 'started' && p.job), ['eval', 'eval']);
    assert.deepEqual([...new Set(progress.map((p) => p.runId))].sort(), [base.runId, adapted.runId].sort(), 'the server names each run once');
  });
});
