/**
 * Benchmark (not a test): sentence pairs on USE-lite. STS-B (regression, scores 0–5): train is permuted with
 * Rng(2024); its first 500 pairs are held out (the --tune validation set), the rest (5,249 pairs, or
 * --train-size N of them) are trained on; scored by Pearson / Spearman on the full dev set (1,500 pairs);
 * MRPC (paraphrase classification): the full train set (3,668 pairs), accuracy / F1 on dev (408 pairs).
 *
 *   zero-shot          the encoder as shipped: cosine of the two sentence embeddings (nothing trained)
 *   head (cross)       the texts joined into one sequence, a linear head on its embedding (encoder frozen)
 *   head-bi            each text embedded alone, the weighted cosine's 513 numbers only (encoder frozen)
 *   svd-r4/r8/r16, random-r8 (bi)  LoRA-XS R in the encoder's 9 linear layers, each text embedded alone;
 *                      STS-B: 5 · (weighted cosine) + bias against the label (models/heads.ts), trained with R;
 *                      MRPC: head on (u, v, |u−v|, u∘v)
 *   mrpc-*             MRPC rows: head only and LoRA-XS r 8 svd, in both pair modes
 *
 * Every training run: the documented settings for USE-lite pairs (3 epochs, batch 32, lr 5e-3, dropout 0,
 * max_length 64, linear schedule, 6 % warm-up; STS-B bi rows: head_lr 2e-2 for the weighted cosine),
 * evaluated once after the last update (no selection on dev);
 * seeds change the head init, R init and data order. lr and dropout were chosen with --tune (500 held-out
 * train pairs standing in for dev), see bench/README.md.
 *
 *   npm run bench:stsb -- [--glue DIR] [--only zero-shot,head,svd-r8,...] [--seeds 0,1,2] [--epochs N] [--lr X] [--head-lr X]
 *                         [--dropout X|model] [--tune] [--out FILE]
 *
 * Results accumulate in bench/results/use_lite_stsb.json (re-read before every write, so processes with
 * disjoint --only/--seeds can share it); the Markdown table is printed at the end.
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
import { DEFAULT_TARGETS_BY_MODEL_TYPE } from '../sidecar/config/defaults';
import { openModelSession } from '../sidecar/session/model_session';
import { readExamples } from '../sidecar/session/run_data';
import { evaluate } from '../sidecar/train/evaluation';

interface Setting {
  name: string;
  label: string;
  data: 'stsb' | 'mrpc';
  pairMode: 'cross' | 'bi';
  /** null: head only; 'none': nothing trained (zero-shot). */
  rank: number | null | 'none';
  init: 'svd' | 'random';
}

export const SETTINGS: Setting[] = [
  { name: 'zero-shot', label: 'zero-shot cosine (nothing trained)', data: 'stsb', pairMode: 'bi', rank: 'none', init: 'svd' },
  { name: 'head-bi', label: 'head only (bi: the weighted cosine, encoder frozen)', data: 'stsb', pairMode: 'bi', rank: null, init: 'svd' },
  { name: 'head', label: 'head only (cross, encoder frozen)', data: 'stsb', pairMode: 'cross', rank: null, init: 'svd' },
  { name: 'svd-r4', label: 'LoRA-XS r 4, svd (bi)', data: 'stsb', pairMode: 'bi', rank: 4, init: 'svd' },
  { name: 'svd-r8', label: 'LoRA-XS r 8, svd (bi)', data: 'stsb', pairMode: 'bi', rank: 8, init: 'svd' },
  { name: 'svd-r16', label: 'LoRA-XS r 16, svd (bi)', data: 'stsb', pairMode: 'bi', rank: 16, init: 'svd' },
  { name: 'svd-r32', label: 'LoRA-XS r 32, svd (bi)', data: 'stsb', pairMode: 'bi', rank: 32, init: 'svd' },
  { name: 'random-r8', label: 'LoRA-XS r 8, random (bi)', data: 'stsb', pairMode: 'bi', rank: 8, init: 'random' },
  { name: 'mrpc-head-cross', label: 'MRPC head only (cross)', data: 'mrpc', pairMode: 'cross', rank: null, init: 'svd' },
  { name: 'mrpc-head-bi', label: 'MRPC head only (bi)', data: 'mrpc', pairMode: 'bi', rank: null, init: 'svd' },
  { name: 'mrpc-svd-r8-cross', label: 'MRPC LoRA-XS r 8, svd (cross)', data: 'mrpc', pairMode: 'cross', rank: 8, init: 'svd' },
  { name: 'mrpc-svd-r8-bi', label: 'MRPC LoRA-XS r 8, svd (bi)', data: 'mrpc', pairMode: 'bi', rank: 8, init: 'svd' },
];

/** Fixed, so every run and seed sees the same training pairs (a permutation of train with this seed). */
const SUBSAMPLE_SEED = 2024;
const TARGETS = [...DEFAULT_TARGETS_BY_MODEL_TYPE.use_lite];
/** Held-out train pairs (the first 500 of the permutation) that stand in for dev with --tune; never trained on. */
const HELDOUT_SIZE = 500;

interface RunRecord {
  setting: string;
  seed: number;
  metrics: Record<string, number>;
  trainableParams: number;
  adapterParams: number;
  seconds: number;
}

type Row = { sentence1: string; sentence2: string; label: string };

/**
 * A GLUE TSV read as GLUE's loaders do (tab-separated, no quoting: MRPC has unbalanced quotes), header
 * from the first line (BOM stripped).
 */
function readGlueTsv(file: string, s1: string, s2: string, label: string): Row[] {
  const lines = fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, '').split(/\r?\n/).filter((l) => l.length > 0);
  const header = lines[0].split('\t');
  const at = (name: string) => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`${file}: no column ${name}`);
    return i;
  };
  const [i1, i2, il] = [at(s1), at(s2), at(label)];
  return lines.slice(1).map((l) => l.split('\t')).filter((c) => c.length > Math.max(i1, i2, il) && c[i1].trim() && c[i2].trim())
    .map((c) => ({ sentence1: c[i1].trim(), sentence2: c[i2].trim(), label: c[il].trim() }));
}

function writeJsonl(file: string, rows: Row[], numeric: boolean): void {
  writeFileAtomic(file, rows.map((r) => JSON.stringify({ ...r, label: numeric ? Number(r.label) : r.label })).join('\n') + '\n');
}

/** The STS-B bi rows train the weighted cosine, at training.head_lr (--head-lr); other rows use lr. */
function trainsWeightedCosine(s: Setting): boolean {
  return s.data === 'stsb' && s.pairMode === 'bi';
}

function configText(s: Setting, seed: number, o: { epochs: number; lr: number; headLr: number; dropout: number | null; targets: string[] }, dataDir: string, modelDir: string, output: string): string {
  const rank = typeof s.rank === 'number' ? s.rank : 8;
  return `model: ${JSON.stringify(modelDir)}
task: ${s.data === 'stsb' ? 'regression' : 'classification'}
data:
  train: ${JSON.stringify(path.join(dataDir, `${s.data}-train.jsonl`))}
  validation: ${JSON.stringify(path.join(dataDir, `${s.data}-dev.jsonl`))}
  text: [sentence1, sentence2]
  label: label
  pair_mode: ${s.pairMode}
adapter:
  rank: ${rank}
  init: ${s.init}
  targets: [${o.targets.join(', ')}]
training:
  epochs: ${o.epochs}
  batch_size: 32
  lr: ${o.lr}
  max_length: 64${trainsWeightedCosine(s) ? `\n  head_lr: ${o.headLr}` : ''}${o.dropout === null ? '' : `\n  dropout: ${o.dropout}`}
  seed: ${seed}
  eval_every: end
  eval_at_start: false
output: ${JSON.stringify(output)}
`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fmt = (xs: number[], scale = 1, digits = 3) =>
  `${(median(xs) * scale).toFixed(digits)} (${(Math.min(...xs) * scale).toFixed(digits)}–${(Math.max(...xs) * scale).toFixed(digits)})`;

export function table(records: RunRecord[]): string {
  const rows = ['| setting | trainable params | dev Pearson | dev Spearman | dev MSE | seeds | s/run |', '|---|---:|---:|---:|---:|---:|---:|'];
  const mrpc = ['| setting | trainable params | dev accuracy % | dev F1 % | seeds | s/run |', '|---|---:|---:|---:|---:|---:|'];
  for (const s of SETTINGS) {
    const rs = records.filter((r) => r.setting === s.name);
    if (!rs.length) continue;
    const m = (k: string) => rs.map((r) => r.metrics[k]);
    const secs = Math.round(median(rs.map((r) => r.seconds)));
    const params = s.rank === 'none' ? '0' : s.rank === null ? rs[0].trainableParams.toLocaleString('en-US') : `${rs[0].adapterParams.toLocaleString('en-US')} + ${(rs[0].trainableParams - rs[0].adapterParams).toLocaleString('en-US')}`;
    if (s.data === 'stsb') rows.push(`| ${s.label} | ${params} | ${fmt(m('pearson'))} | ${fmt(m('spearman'))} | ${fmt(m('mse'), 1, 2)} | ${rs.length} | ${secs} |`);
    else mrpc.push(`| ${s.label} | ${params} | ${fmt(m('accuracy'), 100, 1)} | ${fmt(m('f1'), 100, 1)} | ${rs.length} | ${secs} |`);
  }
  return `STS-B dev (median (min–max) over seeds)\n\n${rows.join('\n')}\n\nMRPC dev\n\n${mrpc.join('\n')}\n`;
}

async function zeroShot(config: RunConfig): Promise<Record<string, number>> {
  const session = await openModelSession({
    modelDir: config.model, task: 'regression', numLabels: 1, adapter: null, seed: 0, dropout: null, pairMode: 'bi', targetScaling: { offset: 0, scale: 5 },
  });
  try {
    const { examples } = readExamples(config, config.data!.validation!, session.tokenizer);
    return evaluate(session, examples, 'regression', 64, session.tokenizer.padId);
  } finally {
    session.dispose();
  }
}

async function main(): Promise<void> {
  const root = path.resolve(__dirname, '..', '..');
  const { values } = parseArgs({
    options: {
      glue: { type: 'string', default: path.resolve(root, '..', 'shared', 'data', 'glue') },
      only: { type: 'string' },
      seeds: { type: 'string', default: '0,1,2' },
      epochs: { type: 'string', default: '3' },
      lr: { type: 'string', default: '0.005' },
      // training.head_lr of the STS-B bi rows (the weighted cosine's 513 numbers); other rows use lr.
      'head-lr': { type: 'string', default: '0.02' },
      // training.dropout; 'model' for the model's own (0.1 for USE-lite)
      dropout: { type: 'string', default: '0' },
      out: { type: 'string', default: path.join(root, 'bench', 'results', 'use_lite_stsb.json') },
      // Smoke runs only (not for the table): fewer training pairs and dev pairs, in a separate work folder.
      'smoke-size': { type: 'string' },
      // Tuning the defaults without dev: validate on the 500 held-out train pairs (never trained on), results
      // in bench/results/use_lite_stsb_tuning.json under "<setting>@lr=X,epochs=N".
      tune: { type: 'boolean', default: false },
      // Training pairs taken after the held-out ones (default: all the rest of train, 5,249 pairs).
      'train-size': { type: 'string' },
      // Comma-separated adapter.targets instead of USE-lite's defaults (recorded in the run's key).
      targets: { type: 'string' },
      // Train on all of STS-B train (the 500 held-out pairs too; not with --tune): recorded in the run's key.
      'all-train': { type: 'boolean', default: false },
    },
  });
  const stsb = path.join(values.glue!, 'STS-B');
  const mrpc = path.join(values.glue!, 'MRPC');
  if (!fs.existsSync(path.join(stsb, 'train.tsv'))) {
    process.stderr.write(`STS-B not found in ${stsb} (pass --glue DIR holding STS-B/ and MRPC/ with train.tsv and dev.tsv)\n`);
    process.exitCode = 2;
    return;
  }
  const only = values.only ? values.only.split(',') : SETTINGS.map((s) => s.name);
  for (const o of only) if (!SETTINGS.some((s) => s.name === o)) throw new Error(`unknown setting ${o}; settings: ${SETTINGS.map((s) => s.name).join(', ')}`);
  const seeds = values.seeds!.split(',').map(Number);
  const targets = values.targets ? values.targets.split(',') : TARGETS;
  const targetsKey = values.targets ? `targets=${targets.join('+')}` : '';
  const allTrain = values['all-train'] === true;
  if (allTrain && values.tune) throw new Error('--all-train trains on the held-out pairs --tune validates on');
  // Dev runs with settings other than the documented ones are kept under their own key.
  const devKey = [values.epochs !== '3' ? `epochs=${values.epochs}` : '', values.lr !== '0.005' ? `lr=${values.lr}` : '', values['head-lr'] !== '0.02' ? `head_lr=${values['head-lr']}` : '', targetsKey, allTrain ? 'all-train' : ''].filter(Boolean).join(',');
  const opts = { epochs: Number(values.epochs), lr: Number(values.lr), headLr: Number(values['head-lr']), dropout: values.dropout === 'model' ? null : Number(values.dropout), targets };
  const smoke = values['smoke-size'] ? Number(values['smoke-size']) : null;
  const tune = values.tune === true;
  const work = path.join(root, 'bench', 'results', 'tmp', smoke ? 'stsb-smoke' : tune ? 'stsb-tune' : allTrain ? 'stsb-all-train' : 'stsb');
  const cut = (rows: Row[]) => (smoke ? rows.slice(0, smoke) : rows);
  const dataDir = path.join(work, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const train = readGlueTsv(path.join(stsb, 'train.tsv'), 'sentence1', 'sentence2', 'score');
  const allOrder = new Rng(SUBSAMPLE_SEED).permutation(train.length);
  const heldOut = allTrain ? 0 : HELDOUT_SIZE;
  const trainSize = values['train-size'] ? Number(values['train-size']) : train.length - heldOut;
  const order = allOrder.slice(heldOut, heldOut + trainSize);
  writeJsonl(path.join(dataDir, 'stsb-train.jsonl'), cut(order.map((i) => train[i])), true);
  writeJsonl(path.join(dataDir, 'stsb-dev.jsonl'), tune
    ? allOrder.slice(0, HELDOUT_SIZE).map((i) => train[i])
    : cut(readGlueTsv(path.join(stsb, 'dev.tsv'), 'sentence1', 'sentence2', 'score')), true);
  if (fs.existsSync(path.join(mrpc, 'train.tsv'))) {
    writeJsonl(path.join(dataDir, 'mrpc-train.jsonl'), cut(readGlueTsv(path.join(mrpc, 'train.tsv'), '#1 String', '#2 String', 'Quality')), false);
    writeJsonl(path.join(dataDir, 'mrpc-dev.jsonl'), cut(readGlueTsv(path.join(mrpc, 'dev.tsv'), '#1 String', '#2 String', 'Quality')), false);
  }
  const modelDir = ensureUseLite(path.join(root, '.cache', 'use-lite')).dir;

  const outFile = path.resolve(tune && values.out === path.join(root, 'bench', 'results', 'use_lite_stsb.json') ? path.join(root, 'bench', 'results', 'use_lite_stsb_tuning.json') : values.out!);
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  const read = (): RunRecord[] => (fs.existsSync(outFile) ? (JSON.parse(fs.readFileSync(outFile, 'utf8')) as { runs: RunRecord[] }).runs : []);
  const records: RunRecord[] = read();
  const save = (rec: RunRecord): void => {
    records.push(rec);
    const others = read();
    const merged = [...others.filter((o) => !records.some((r) => r.setting === o.setting && r.seed === o.seed)), ...records];
    // The file's settings are the defaults'; a run with other targets says so in its setting key.
    const { targets: _runTargets, ...shared } = opts;
    writeFileAtomic(outFile, JSON.stringify({ trainSize: order.length, heldOut: HELDOUT_SIZE, subsampleSeed: SUBSAMPLE_SEED, ...shared, batchSize: 32, maxLength: 64, targets: TARGETS, runs: merged }, null, 2) + '\n');
  };
  for (const seed of seeds) {
    for (const s of SETTINGS.filter((x) => only.includes(x.name))) {
      const seedOf = s.rank === 'none' ? 0 : seed; // zero-shot has no randomness
      const key = tune && s.rank !== 'none'
        ? `${s.name}@n=${order.length},lr=${opts.lr}${trainsWeightedCosine(s) ? `,head_lr=${opts.headLr}` : ''},epochs=${opts.epochs}${opts.dropout === null ? '' : `,dropout=${opts.dropout}`}${targetsKey ? `,${targetsKey}` : ''}`
        : s.rank !== 'none' && devKey ? `${s.name}@${devKey}` : s.name;
      if (records.some((r) => r.setting === key && r.seed === seedOf)) continue;
      if (s.data === 'mrpc' && !fs.existsSync(path.join(dataDir, 'mrpc-train.jsonl'))) {
        process.stderr.write(`MRPC not found in ${mrpc}: skipping ${s.name}\n`);
        continue;
      }
      const file = path.join(work, `${key}-seed${seedOf}.loraxs.yaml`);
      const text = configText(s, seedOf, opts, dataDir, modelDir, path.join(work, 'runs', `${key}-seed${seedOf}`));
      fs.writeFileSync(file, text);
      const { config, problems } = parseConfigText(text, file, { requireTraining: true });
      if (!config) throw new Error(problems.map((p) => p.message).join('; '));
      process.stderr.write(`\n== ${s.label}, seed ${seedOf} (${new Date().toISOString()})\n`);
      const t0 = performance.now();
      if (s.rank === 'none') {
        const metrics = await zeroShot(config as RunConfig);
        save({ setting: key, seed: seedOf, metrics, trainableParams: 0, adapterParams: 0, seconds: Math.round((performance.now() - t0) / 1000) });
        process.stderr.write(`== zero-shot: ${JSON.stringify(metrics)}\n`);
        continue;
      }
      const result = await runTraining(config as RunConfig, {
        headOnly: s.rank === null,
        events: { log: (m) => process.stderr.write(`${m}\n`), eval: (r) => process.stderr.write(`eval step ${r.step}: ${JSON.stringify(r.eval)}\n`) },
      });
      const last = result.best!.eval; // evaluated once, after the last update
      save({ setting: key, seed: seedOf, metrics: last, trainableParams: result.trainableParams, adapterParams: result.adapterParams, seconds: Math.round(result.seconds) });
      process.stderr.write(`== ${s.name} seed ${seedOf}: ${JSON.stringify(last)} (${Math.round(result.seconds)} s)\n`);
    }
  }
  process.stdout.write(tune ? `${read().map((r) => `${r.setting} seed ${r.seed}: ${JSON.stringify(r.metrics)}`).join('\n')}\n` : table(read()));
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
