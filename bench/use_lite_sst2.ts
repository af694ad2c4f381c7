/**
 * Benchmark (not a test): USE-lite fine-tuned on a fixed 4,000-sentence subsample of SST-2 train, scored by
 * accuracy on the full dev set (872 sentences), like the paper's Tables 1 and 4 on a small scale:
 *   head only (encoder frozen) | LoRA-XS svd r = 4, 8, 16 | LoRA-XS r = 8 with random and svd-bottom init,
 * each over 3 seeds (median and range). Every run has the same head, epochs, learning rate and data; the
 * seed changes the head's init, R's init and the data order. Scores are the last epoch's (no selection on
 * dev).
 *
 *   npm run bench:sst2 -- [--glue DIR] [--only head,svd-r8,...] [--seeds 0,1,2] [--epochs N] [--out FILE]
 *
 * Needs ../shared/data/glue/SST-2 (train.tsv, dev.tsv) or --glue; imports USE-lite into .cache/use-lite.
 * Writes bench/results/use_lite_sst2.json (one record per finished run, appended as it goes, so a long
 * run can be read while it works) and prints a Markdown table.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfigText } from '../sidecar/config/parse';
import type { RunConfig } from '../sidecar/config/types';
import { ensureUseLite } from '../sidecar/importers/use_lite';
import { runTraining } from '../sidecar/train/loop';
import { Rng } from '../sidecar/rng';
import { writeFileAtomic } from '../sidecar/io/atomic_write';
import { readTable } from '../sidecar/io/data_table';
import { DEFAULT_TARGETS_BY_MODEL_TYPE } from '../sidecar/config/defaults';

interface Setting {
  name: string;
  label: string;
  /** null: head only. */
  rank: number | null;
  init: 'svd' | 'random' | 'svd-bottom';
}

export const SETTINGS: Setting[] = [
  { name: 'head', label: 'head only (encoder frozen)', rank: null, init: 'svd' },
  { name: 'svd-r4', label: 'LoRA-XS r=4, svd', rank: 4, init: 'svd' },
  { name: 'svd-r8', label: 'LoRA-XS r=8, svd', rank: 8, init: 'svd' },
  { name: 'svd-r16', label: 'LoRA-XS r=16, svd', rank: 16, init: 'svd' },
  { name: 'random-r8', label: 'LoRA-XS r=8, random', rank: 8, init: 'random' },
  { name: 'svd-bottom-r8', label: 'LoRA-XS r=8, svd-bottom', rank: 8, init: 'svd-bottom' },
];

const TRAIN_SIZE = 4000;
/** Fixed, so every run and seed sees the same 4,000 sentences. */
const SUBSAMPLE_SEED = 2024;
const TARGETS = [...DEFAULT_TARGETS_BY_MODEL_TYPE.use_lite];

interface RunRecord {
  setting: string;
  seed: number;
  accuracy: number;
  balancedAccuracy: number;
  trainableParams: number;
  adapterParams: number;
  seconds: number;
}

/** SST-2's `sentence` and `label` columns (as strings, trimmed), read with the engine's TSV reader. */
function readSst2(file: string): Array<{ sentence: string; label: string }> {
  return readTable(file).rows.map((r) => ({ sentence: String(r.sentence).trim(), label: String(r.label).trim() }));
}

function writeJsonl(file: string, rows: Array<{ sentence: string; label: string }>): void {
  writeFileAtomic(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

function configText(s: Setting, seed: number, epochs: number, dataDir: string, modelDir: string, output: string, evalEvery: number): string {
  // The config always names an adapter (the schema requires one); a head-only run ignores it.
  const adapter = `adapter:\n  rank: ${s.rank ?? 8}\n  init: ${s.init}\n  targets: [${TARGETS.join(', ')}]\n`;
  return `model: ${JSON.stringify(modelDir)}
task: classification
data:
  train: ${JSON.stringify(path.join(dataDir, 'train.jsonl'))}
  validation: ${JSON.stringify(path.join(dataDir, 'dev.jsonl'))}
  text: sentence
  label: label
${adapter}training:
  epochs: ${epochs}
  batch_size: 32
  lr: 0.002
  max_length: 64
  seed: ${seed}
  eval_every: ${evalEvery}
output: ${JSON.stringify(output)}
`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function table(records: RunRecord[]): string {
  const rows = ['| setting | trainable params | dev accuracy, median (min–max) | seeds |', '|---|---:|---:|---:|'];
  for (const s of SETTINGS) {
    const rs = records.filter((r) => r.setting === s.name);
    if (!rs.length) continue;
    const acc = rs.map((r) => 100 * r.accuracy);
    rows.push(`| ${s.label} | ${rs[0].trainableParams.toLocaleString('en-US')} | ${median(acc).toFixed(1)} (${Math.min(...acc).toFixed(1)}–${Math.max(...acc).toFixed(1)}) | ${rs.length} |`);
  }
  return rows.join('\n') + '\n';
}

async function main(): Promise<void> {
  const root = path.resolve(__dirname, '..', '..');
  const { values } = parseArgs({
    options: {
      glue: { type: 'string', default: path.resolve(root, '..', 'shared', 'data', 'glue') },
      only: { type: 'string' },
      seeds: { type: 'string', default: '0,1,2' },
      epochs: { type: 'string', default: '3' },
      out: { type: 'string', default: path.join(root, 'bench', 'results', 'use_lite_sst2.json') },
    },
  });
  const sst2 = path.join(values.glue!, 'SST-2');
  if (!fs.existsSync(path.join(sst2, 'train.tsv'))) {
    process.stderr.write(`SST-2 not found in ${sst2} (pass --glue DIR holding SST-2/train.tsv and dev.tsv)\n`);
    process.exitCode = 2;
    return;
  }
  const only = values.only ? values.only.split(',') : SETTINGS.map((s) => s.name);
  const seeds = values.seeds!.split(',').map(Number);
  const epochs = Number(values.epochs);
  const work = path.join(root, 'bench', 'results', 'tmp', 'sst2');
  const dataDir = path.join(work, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const train = readSst2(path.join(sst2, 'train.tsv'));
  const order = new Rng(SUBSAMPLE_SEED).permutation(train.length).slice(0, TRAIN_SIZE);
  writeJsonl(path.join(dataDir, 'train.jsonl'), order.map((i) => train[i]));
  writeJsonl(path.join(dataDir, 'dev.jsonl'), readSst2(path.join(sst2, 'dev.tsv')));
  const modelDir = ensureUseLite(path.join(root, '.cache', 'use-lite')).dir;

  const outFile = path.resolve(values.out!);
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  const records: RunRecord[] = fs.existsSync(outFile) ? (JSON.parse(fs.readFileSync(outFile, 'utf8')) as { runs: RunRecord[] }).runs : [];
  const totalSteps = Math.ceil(TRAIN_SIZE / 32) * epochs;
  for (const seed of seeds) {
    for (const s of SETTINGS.filter((x) => only.includes(x.name))) {
      if (records.some((r) => r.setting === s.name && r.seed === seed)) continue;
      const file = path.join(work, `${s.name}-seed${seed}.loraxs.yaml`);
      const text = configText(s, seed, epochs, dataDir, modelDir, path.join(work, 'runs', `${s.name}-seed${seed}`), totalSteps);
      fs.writeFileSync(file, text);
      const { config, problems } = parseConfigText(text, file, { requireTraining: true });
      if (!config) throw new Error(problems.map((p) => p.message).join('; '));
      process.stderr.write(`\n== ${s.label}, seed ${seed}\n`);
      const result = await runTraining(config as RunConfig, {
        headOnly: s.rank === null,
        events: { log: (m) => process.stderr.write(`${m}\n`), eval: (r) => process.stderr.write(`eval step ${r.step}: ${JSON.stringify(r.eval)}\n`) },
      });
      const last = result.best!.eval; // evaluated once, at the last update
      records.push({
        setting: s.name, seed, accuracy: last.accuracy, balancedAccuracy: last.balanced_accuracy,
        trainableParams: result.trainableParams, adapterParams: result.adapterParams, seconds: Math.round(result.seconds),
      });
      // Re-read: another process may be filling the same file with other settings.
      const others = fs.existsSync(outFile) ? (JSON.parse(fs.readFileSync(outFile, 'utf8')) as { runs: RunRecord[] }).runs : [];
      const merged = [...others.filter((o) => !records.some((r) => r.setting === o.setting && r.seed === o.seed)), ...records];
      writeFileAtomic(outFile, JSON.stringify({ trainSize: TRAIN_SIZE, subsampleSeed: SUBSAMPLE_SEED, epochs, targets: TARGETS, runs: merged }, null, 2) + '\n');
      process.stderr.write(`== ${s.name} seed ${seed}: dev accuracy ${last.accuracy.toFixed(4)} (${Math.round(result.seconds)} s)\n`);
    }
  }
  const all = (JSON.parse(fs.readFileSync(outFile, 'utf8')) as { runs: RunRecord[] }).runs;
  process.stdout.write(table(all));
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
