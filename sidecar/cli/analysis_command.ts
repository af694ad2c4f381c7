/**
 * `loraxs ablate CONFIG --kind retention|delta|init|spectra ...`: the CLI face of analysis_run.ts. Writes
 * `<output>/analysis/<kind>.json` and `.csv`; with --json also prints the report on stdout. Ctrl-C stops
 * after the current evaluation (what was measured is cached: run the same command again to resume).
 */
import { LoraxsError } from '../errors';
import { str, list, numbers, positiveInt, oneOf, interruptSignal, type CommandSpec } from './options';
import { loadConfig } from '../config/parse';
import { stderrProgress } from './progress';
import { runJob } from '../engine/jobs';
import { INIT_KINDS } from '../loraxs/init';
import type { InitKind } from '../config/types';
import { ANALYSIS_KINDS } from '../analysis/analysis_options';
import { analysisDir } from '../analysis/ablation_results';
import { REGIONS, type Region } from '../analysis/spectrum_regions';
import type { AnalysisKind, AnalysisReport } from '../records';

/** A short text summary of a report for the terminal. */
export function reportText(r: AnalysisReport, dir: string): string {
  const lines: string[] = [];
  if (r.kind === 'retention' || r.kind === 'delta') {
    lines.push(`${r.kind}: ${r.metric} on ${r.evalExamples} examples; unablated ${r.baseline.toFixed(4)}`);
    for (const row of r.results.filter((x) => x.layer === null)) {
      lines.push(`  ${row.module.padEnd(24)} ${row.region.padEnd(6)} ${row.fraction.toFixed(2)}  ${row.value.toFixed(4)}`);
    }
  } else if (r.kind === 'init') {
    lines.push(`init comparison: ${r.metric}, median (std) over ${r.seeds.length} seeds`);
    for (const s of r.results) {
      const f = (m: number | null, d: number | null) => (m === null ? '-' : `${m.toFixed(4)} (${(d ?? 0).toFixed(4)})`);
      lines.push(`  ${s.init.padEnd(14)} r=${String(s.rank).padEnd(4)} best ${f(s.bestMedian, s.bestStd)}  epoch 1 ${f(s.after1Median, s.after1Std)}  epoch 2 ${f(s.after2Median, s.after2Std)}`);
    }
  } else if (r.kind === 'spectra') {
    for (const e of r.entries) lines.push(`  ${e.name.padEnd(48)} energy@r${e.rank} ${e.energyAtRank.toFixed(4)}${e.deltaRatio === null ? '' : `  |dW|/|W| ${e.deltaRatio.toExponential(3)}`}`);
  }
  if (r.cancelled) lines.push('cancelled: run the same command again to resume');
  lines.push(`written: ${dir}/${r.kind}.json, ${r.kind}.csv`);
  return lines.join('\n') + '\n';
}

export const ablateCommand: CommandSpec = {
  summary: 'singular-value analyses: retention ablation, ΔW subspace projection, init/rank comparison, spectra',
  usage: 'CONFIG --kind retention|delta|init|spectra [--adapter DIR] [--base DIR] [--fractions 0,0.5,1] [--regions top,bottom] ' +
    '[--per-layer] [--eval-limit N] [--seeds N] [--inits svd,random] [--ranks 4,8] [--targets a,b] [--json]',
  positionals: 1,
  options: {
    kind: { type: 'string', valueName: 'K', help: ANALYSIS_KINDS.join(' | ') },
    adapter: { type: 'string', valueName: 'dir', help: 'adapter merged into the model under study (retention, spectra) or giving ΔW (delta)' },
    base: { type: 'string', valueName: 'dir', help: 'delta: the base model of a fully fine-tuned config model' },
    fractions: { type: 'string', valueName: 'f,f', help: 'fractions of singular values kept (default analysis.fractions)' },
    regions: { type: 'string', valueName: 'r,r', help: 'top, middle, bottom (default analysis.regions)' },
    'per-layer': { type: 'boolean', help: 'also ablate one layer at a time' },
    'eval-limit': { type: 'string', valueName: 'N', help: 'validation examples per evaluation (default analysis.eval_limit, 256)' },
    seeds: { type: 'string', valueName: 'N', help: 'init: seeds per setting (default analysis.seeds)' },
    inits: { type: 'string', valueName: 'a,b', help: `init: initialisations compared (${INIT_KINDS.join(', ')}; default svd,random,svd-of-random)` },
    ranks: { type: 'string', valueName: 'r,r', help: 'init: ranks compared (default the config\'s)' },
    targets: { type: 'string', valueName: 'a,b', help: 'module types studied (default adapter.targets)' },
    json: { type: 'boolean', help: 'print the report as JSON on stdout' },
  },
  async run([file], v) {
    const kind = str(v, 'kind');
    if (!kind) throw new LoraxsError('--kind is required (retention, delta, init or spectra)');
    const [k] = oneOf([kind], ANALYSIS_KINDS, 'kind') as AnalysisKind[];
    const job = await runJob({ kind: 'ablate', configFile: file, request: {
      kind: k,
      adapterDir: str(v, 'adapter'),
      baseDir: str(v, 'base'),
      fractions: numbers(v, 'fractions', false),
      regions: oneOf(list(v, 'regions'), REGIONS, 'regions') as Region[] | undefined,
      perLayer: v['per-layer'] === true,
      evalLimit: positiveInt(v, 'eval-limit'),
      seeds: positiveInt(v, 'seeds'),
      inits: oneOf(list(v, 'inits'), INIT_KINDS, 'inits') as InitKind[] | undefined,
      ranks: numbers(v, 'ranks', true),
      targets: list(v, 'targets'),
    } }, stderrProgress(), interruptSignal('stopping after the current evaluation; results so far are kept'));
    if (job.kind !== 'analysis') throw new Error(`internal error: an ablate job returned ${job.kind}`);
    const report = job.report;
    const config = loadConfig(file, { requireTraining: false });
    process.stdout.write(v.json === true ? JSON.stringify(report, null, 2) + '\n' : reportText(report, analysisDir(config.output)));
    return report.cancelled ? 130 : 0;
  },
};
