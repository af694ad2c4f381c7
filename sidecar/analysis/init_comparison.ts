/**
 * Initialisation and rank comparisons (appendices F–H, Tables 4 and 14): trainings that differ only in
 * `adapter.init` and/or `adapter.rank`, over several seeds (training.seed, +1, +2, ...). Each run writes
 * to `<output>/analysis/init/<init>-r<rank>-s<seed>/` like `loraxs train` does; a finished run is reused,
 * a cancelled one resumes from its checkpoint. Reported per run: the validation curve, the best-epoch
 * metric, and the metric after epochs 1 and 2; per setting: their median and standard deviation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { InitKind, RunConfig } from '../config/types';
import { LoraxsError } from '../errors';
import { writeJsonAtomic } from '../io/atomic_write';
import { runTraining } from '../train/loop';
import { readMetricsLog } from '../train/metrics_log';
import { bestMetricOf, higherIsBetter, isBetter } from '../train/evaluation';
import { toCsv, writeReport } from './ablation_results';
import type { CancelSignal } from './ablation_sweep';
import type { ResolvedAnalysis } from './analysis_options';
import type { CurvePoint, EngineEvents, EvalRecord, InitReport, InitRun, InitSummary } from '../records';





export interface InitEvents extends EngineEvents {
  /** A run finished (or was found finished). */
  run?(run: InitRun): void;
}

export function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Sample standard deviation (n − 1); 0 for one value; null for none. */
export function stdDev(xs: number[]): number | null {
  if (!xs.length) return null;
  if (xs.length === 1) return 0;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
}

/** A run's curve and summary numbers from its metrics.jsonl. */
export function summariseRun(metricsFile: string, metric: string): Pick<InitRun, 'curve' | 'best' | 'bestEpoch' | 'after1' | 'after2'> {
  const evals = readMetricsLog(metricsFile).filter((r): r is EvalRecord => 'eval' in r);
  const curve = evals.map((r) => ({ step: r.step, epoch: r.epoch, value: r.eval[metric] }));
  const trained = curve.filter((p) => p.step > 0);
  let best: CurvePoint | null = null;
  for (const p of trained) if (!best || isBetter(metric, p.value, best.value)) best = p;
  const lastOf = (epoch: number): number | null => {
    const at = trained.filter((p) => p.epoch === epoch);
    return at.length ? at[at.length - 1].value : null;
  };
  return { curve, best: best?.value ?? null, bestEpoch: best?.epoch ?? null, after1: lastOf(1), after2: lastOf(2) };
}

export function summarise(runs: InitRun[], inits: InitKind[], ranks: number[]): InitSummary[] {
  const out: InitSummary[] = [];
  for (const init of inits) {
    for (const rank of ranks) {
      const rs = runs.filter((r) => r.init === init && r.rank === rank);
      const vals = (f: (r: InitRun) => number | null): number[] => rs.map(f).filter((v): v is number => v !== null && Number.isFinite(v));
      out.push({
        init, rank, runs: rs.length,
        bestMedian: median(vals((r) => r.best)), bestStd: stdDev(vals((r) => r.best)),
        after1Median: median(vals((r) => r.after1)), after1Std: stdDev(vals((r) => r.after1)),
        after2Median: median(vals((r) => r.after2)), after2Std: stdDev(vals((r) => r.after2)),
      });
    }
  }
  return out;
}

export const INIT_CSV_COLUMNS = ['init', 'rank', 'runs', 'bestMedian', 'bestStd', 'after1Median', 'after1Std', 'after2Median', 'after2Std'];

/** The config of one comparison run: only init, rank, seed and output differ from `config`. */
export function comparisonConfig(config: RunConfig, init: InitKind, rank: number, seed: number, output: string): RunConfig {
  const sameRank = rank === config.adapter.rank;
  return {
    ...config,
    adapter: { ...config.adapter, init, rank, rankPattern: sameRank ? config.adapter.rankPattern : {} },
    training: { ...config.training, seed },
    output,
  };
}

const DONE_FILE = 'comparison_done.json';

export async function runInitComparison(config: RunConfig, a: ResolvedAnalysis, events: InitEvents = {}, signal?: CancelSignal): Promise<InitReport> {
  const t0 = performance.now();
  if (!config.data?.validation) {
    throw new LoraxsError('initialisation comparisons evaluate on data.validation; the config has none', { file: config.file, detail: 'data.validation' });
  }
  const metric = bestMetricOf(config.task);
  const seeds = Array.from({ length: a.seeds }, (_, i) => config.training.seed + i);
  const settings = a.inits.flatMap((init) => a.ranks.flatMap((rank) => seeds.map((seed) => ({ init, rank, seed }))));
  const runs: InitRun[] = [];
  let cancelled = false;
  for (const [i, s] of settings.entries()) {
    if (signal?.aborted) {
      cancelled = true;
      break;
    }
    const output = path.join(a.outDir, 'init', `${s.init}-r${s.rank}-s${s.seed}`);
    const done = path.join(output, DONE_FILE);
    if (!fs.existsSync(done)) {
      events.log?.(`comparison run ${s.init}, rank ${s.rank}, seed ${s.seed} (${i + 1} of ${settings.length})`);
      const resume = fs.existsSync(path.join(output, 'checkpoint'));
      const result = await runTraining(comparisonConfig(config, s.init, s.rank, s.seed, output),
        { resume, events: { log: events.log, progress: events.progress, eval: events.eval }, signal: signal as AbortSignal | undefined });
      if (result.cancelled) {
        cancelled = true;
        break;
      }
      writeJsonAtomic(done, { steps: result.steps, seconds: result.seconds });
    }
    const run: InitRun = { ...s, output, ...summariseRun(path.join(output, 'metrics.jsonl'), metric) };
    runs.push(run);
    events.run?.(run);
    events.progress?.('init comparison', i + 1, settings.length);
  }
  const baselines = runs.map((r) => r.curve.find((p) => p.step === 0)?.value).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const report: InitReport = {
    kind: 'init', metric, higherIsBetter: higherIsBetter(metric), baseline: median(baselines), model: config.model,
    inits: a.inits, ranks: a.ranks, seeds, runs, results: summarise(runs, a.inits, a.ranks), cancelled,
    seconds: (performance.now() - t0) / 1000,
  };
  writeReport(a.outDir, 'init', report, toCsv(INIT_CSV_COLUMNS, report.results as unknown as Array<Record<string, unknown>>));
  return report;
}
