/**
 * Spectra of the studied weights: the singular values of each module (exact, cached), the share of the
 * spectrum's energy Σ_{i<r} σ_i² / Σ σ_i² the configured rank r keeps, and, for a trained adapter,
 * ‖ΔW‖_F / ‖W‖_F per module (ΔW = (α/r) U_r R Σ_r V_rᵀ).
 */
import * as tf from '../backend/tf';
import type { RunConfig } from '../config/types';
import { pairModeOf } from '../session/pair_mode';
import { openModelSession } from '../session/model_session';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { deltaWeight } from '../loraxs/merge';
import { rankFor } from '../loraxs/targets';
import { groupModules } from './module_groups';
import { cachedExactSvd } from './exact_svd_cache';
import { toCsv, writeReport } from './ablation_results';
import type { AnalysisEvents, CancelSignal } from './ablation_sweep';
import type { ResolvedAnalysis } from './analysis_options';
import type { SpectraReport, SpectrumEntry } from '../records';



/** Σ_{i<r} σ_i² / Σ σ_i² (1 for an all-zero spectrum). */
export function energyShare(s: ArrayLike<number>, r: number): number {
  let kept = 0;
  let all = 0;
  for (let i = 0; i < s.length; i++) {
    const e = s[i] * s[i];
    all += e;
    if (i < r) kept += e;
  }
  return all > 0 ? kept / all : 1;
}

export const SPECTRA_CSV_COLUMNS = ['module', 'layer', 'name', 'outFeatures', 'inFeatures', 'rank', 'energyAtRank', 'deltaRatio', 'sigmaMax', 'sigmaMin'];

export async function runSpectra(config: RunConfig, a: ResolvedAnalysis, events: AnalysisEvents = {}, signal?: CancelSignal): Promise<SpectraReport> {
  const t0 = performance.now();
  const saved = a.adapterDir ? readAdapterConfig(a.adapterDir).config : null;
  const session = await openModelSession({
    modelDir: config.model, task: config.task, numLabels: config.task === 'regression' ? 1 : saved?.numLabels ?? 2, adapter: null,
    seed: config.training.seed, dropout: null, adapterDir: a.adapterDir ?? undefined, events, configFile: config.file, pairMode: pairModeOf(config),
  });
  try {
    const groups = groupModules(session.backbone.linearModules(), a.targets, { file: config.file, detail: 'adapter.targets' });
    const rank = saved?.rank ?? config.adapter.rank;
    const pattern = saved?.rankPattern ?? config.adapter.rankPattern;
    const all = groups.flatMap((g) => g.modules.map((m) => ({ g, m })));
    const entries: SpectrumEntry[] = [];
    let cancelled = false;
    for (const [i, { g, m }] of all.entries()) {
      if (signal?.aborted) {
        cancelled = true;
        break;
      }
      const W = session.backbone.weights.get(`${m.name}.weight`)!;
      const { svd } = cachedExactSvd(W.dataSync() as Float32Array, m.outFeatures, m.inFeatures, m.name);
      const adapted = session.adapters?.modules.get(m.name);
      const deltaRatio = adapted ? tf.tidy(() => tf.div(tf.norm(deltaWeight(adapted)), tf.norm(W)).dataSync()[0]) : null;
      const r = adapted ? session.adapters!.targets.find((t) => t.module.name === m.name)!.rank : rankFor(m.name, rank, pattern);
      entries.push({
        module: g.type, name: m.name, layer: m.layer, outFeatures: m.outFeatures, inFeatures: m.inFeatures,
        rank: r, energyAtRank: energyShare(svd.S, r), deltaRatio, singularValues: Array.from(svd.S),
      });
      events.progress?.('spectra', i + 1, all.length);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const layers = [...new Set(entries.map((e) => e.layer).filter((l): l is number => l !== null))].sort((x, y) => x - y);
    const report: SpectraReport = {
      kind: 'spectra', model: config.model, adapter: a.adapterDir, modules: groups.map((g) => g.type), layers, entries, cancelled,
      seconds: (performance.now() - t0) / 1000,
    };
    const rows = entries.map((e) => ({ ...e, sigmaMax: e.singularValues[0], sigmaMin: e.singularValues[e.singularValues.length - 1] }));
    writeReport(a.outDir, 'spectra', report, toCsv(SPECTRA_CSV_COLUMNS, rows));
    return report;
  } finally {
    session.dispose();
  }
}
