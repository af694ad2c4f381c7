/**
 * Initialisation comparisons on a tiny checkpoint: one training per (init, rank, seed), curves from each
 * run's metrics.jsonl, medians over seeds, finished runs reused on a second call; and `loraxs ablate`
 * through the CLI command table with --json.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../sidecar/backend/choice';
import { loadConfig } from '../sidecar/config/parse';
import { runAnalysis } from '../sidecar/analysis/analysis_run';
import { median } from '../sidecar/analysis/init_comparison';
import { COMMANDS } from '../sidecar/cli/commands';
import { makeWorkspace } from './workspace';
import { tempDir } from './paths';
import type { InitReport } from '../sidecar/records';

process.env.LORAXS_CACHE_DIR ??= tempDir('loraxs-cache-');

const YAML = `model: model
task: classification
data: { train: train.tsv, validation: dev.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [query, value] }
training: { epochs: 2, batch_size: 8, lr: 5.0e-3, head_lr: 1.0e-2, seed: 5 }
analysis: { seeds: 2 }
`;

test('init comparison: a training per init × rank × seed, curves, medians, finished runs reused', async () => {
  await initBackend();
  const ws = makeWorkspace('bert', 'seq-cls', { train: 24, dev: 8 });
  const config = loadConfig(ws.config('i', YAML), { requireTraining: true });
  const logs: string[] = [];
  const report = await runAnalysis(config, { kind: 'init', inits: ['svd', 'random'], ranks: [2, 4] }, { log: (m) => logs.push(m) }) as InitReport;
  assert.equal(report.kind, 'init');
  assert.equal(report.metric, 'accuracy');
  assert.deepEqual(report.seeds, [5, 6]);
  assert.equal(report.runs.length, 2 * 2 * 2);
  for (const run of report.runs) {
    assert.deepEqual(run.curve.map((p) => p.epoch), [0, 1, 2], `${run.init} r${run.rank} s${run.seed}`);
    assert.equal(run.after1, run.curve[1].value);
    assert.equal(run.after2, run.curve[2].value);
    assert.equal(run.best, Math.max(run.curve[1].value, run.curve[2].value));
    const saved = JSON.parse(fs.readFileSync(path.join(run.output, 'adapter.safetensors').replace('adapter.safetensors', 'loraxs_config.json'), 'utf8'));
    assert.equal(saved.init, run.init);
    assert.equal(saved.rank, run.rank);
    assert.equal(saved.seed, run.seed);
  }
  assert.equal(report.results.length, 4);
  for (const s of report.results) {
    const rs = report.runs.filter((r) => r.init === s.init && r.rank === s.rank);
    assert.equal(s.runs, 2);
    assert.equal(s.bestMedian, median(rs.map((r) => r.best!)));
  }
  assert.equal(logs.filter((l) => l.startsWith('comparison run ')).length, 8);
  const csv = fs.readFileSync(path.join(config.output, 'analysis', 'init.csv'), 'utf8').trim().split('\n');
  assert.equal(csv[0], 'init,rank,runs,bestMedian,bestStd,after1Median,after1Std,after2Median,after2Std');
  assert.equal(csv.length, 5);

  const again: string[] = [];
  const second = await runAnalysis(config, { kind: 'init', inits: ['svd', 'random'], ranks: [2, 4] }, { log: (m) => again.push(m) }) as InitReport;
  assert.equal(again.filter((l) => l.startsWith('comparison run ')).length, 0, 'finished runs must be reused');
  assert.deepEqual(second.results, report.results);
});

test('loraxs ablate --kind retention --json prints {kind, metric, baseline, results} and writes JSON and CSV', async () => {
  await initBackend();
  const ws = makeWorkspace('llama', 'causal-lm', { dev: 8 });
  const file = ws.config('cli', `model: model
task: causal-lm
data: { train: train.tsv, validation: dev.tsv, text: sentence }
adapter: { rank: 4, targets: [k_proj] }
training: { batch_size: 8, max_length: 16 }
`);
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  // Only the command's string output is captured: the test runner's own reports are binary chunks.
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    if (typeof chunk === 'string') {
      out += chunk;
      return true;
    }
    return write(chunk, ...rest);
  }) as typeof process.stdout.write;
  let code: number | void;
  try {
    code = await COMMANDS.ablate.run([file], { kind: 'retention', fractions: '0,0.5,1', 'eval-limit': '4', json: true, regions: 'top,bottom' });
  } finally {
    process.stdout.write = write;
  }
  assert.equal(code, 0);
  const report = JSON.parse(out);
  assert.equal(report.kind, 'retention');
  assert.equal(report.metric, 'loss');
  assert.equal(typeof report.baseline, 'number');
  assert.equal(report.results.length, 1 * 3 * 2);
  for (const r of report.results) assert.deepEqual(Object.keys(r), ['module', 'layer', 'region', 'fraction', 'value']);
  assert.deepEqual(report.results.map((r: { region: string; fraction: number }) => `${r.region}${r.fraction}`), ['top0', 'bottom0', 'top0.5', 'bottom0.5', 'top1', 'bottom1']);
  assert.ok(fs.existsSync(path.join(ws.dir, 'runs', 'cli', 'analysis', 'retention.json')));
  assert.ok(fs.existsSync(path.join(ws.dir, 'runs', 'cli', 'analysis', 'retention.csv')));
  await assert.rejects(COMMANDS.ablate.run([file], { kind: 'nonsense' }), /--kind takes retention, delta, init, spectra/);
  await assert.rejects(COMMANDS.ablate.run([file], { kind: 'retention', fractions: '0,2' }), /fractions must lie in \[0, 1\], got 2/);
});
