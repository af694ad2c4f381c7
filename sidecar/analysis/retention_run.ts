/**
 * `loraxs ablate --kind retention`: the singular-value retention sweep over the config's module types on
 * the model under study (study_model.ts), with exact SVDs from the on-disk cache.
 */
import * as tf from '../backend/tf';
import type { RunConfig } from '../config/types';
import { groupModules } from './module_groups';
import { openStudyModel } from './study_model';
import { cachedExactSvd } from './exact_svd_cache';
import { svdTensors, type SvdTensors } from './svd_tensors';
import { retainedWeight } from './retention';
import { runSweep, type AnalysisEvents, type CancelSignal, type PreparedGroup } from './ablation_sweep';
import { CellCache, writeAblationReport } from './ablation_results';
import type { ResolvedAnalysis } from './analysis_options';
import type { AblationReport } from '../records';

export async function runRetention(config: RunConfig, a: ResolvedAnalysis, events: AnalysisEvents = {}, signal?: CancelSignal): Promise<AblationReport> {
  const t0 = performance.now();
  const study = await openStudyModel(config, { adapterDir: a.adapterDir ?? undefined, evalLimit: a.evalLimit, events });
  try {
    const groups = groupModules(study.session.backbone.linearModules(), a.targets, { file: config.file, detail: 'adapter.targets' });
    const cache = new CellCache(a.outDir, 'retention', `${study.setupKey}/${a.targets.join(',')}`);
    const prepare = (g: (typeof groups)[number]): PreparedGroup => {
      const svds = new Map<string, SvdTensors>();
      try {
        g.modules.forEach((m, i) => {
          const W = study.weights.get(`${m.name}.weight`)!;
          const { svd, cached, ms } = cachedExactSvd(W.dataSync() as Float32Array, m.outFeatures, m.inFeatures, m.name);
          svds.set(m.name, svdTensors(svd));
          events.progress?.(`exact SVD of ${g.type}`, i + 1, g.modules.length);
          if (!cached) events.log?.(`exact SVD of ${m.name} (${m.outFeatures} × ${m.inFeatures}): ${(ms / 1000).toFixed(1)} s`);
        });
      } catch (e) {
        for (const s of svds.values()) s.dispose();
        throw e;
      }
      return {
        weightFor(name, region, fraction) {
          const W = study.weights.get(`${name}.weight`)! as tf.Tensor2D;
          const t = retainedWeight(W, svds.get(name)!, region, fraction);
          return { tensor: t, owned: t !== W };
        },
        dispose: () => svds.forEach((s) => s.dispose()),
      };
    };
    const out = await runSweep('retention', study, groups, a, cache, prepare, events, signal);
    const report: AblationReport = {
      kind: 'retention', metric: study.metric, higherIsBetter: study.higherIsBetter, baseline: out.baseline,
      model: config.model, adapter: a.adapterDir, base: null, evalExamples: study.examples.length,
      modules: groups.map((g) => g.type), layers: out.layers, fractions: a.fractions, regions: a.regions,
      results: out.rows, cancelled: out.cancelled, seconds: (performance.now() - t0) / 1000,
    };
    writeAblationReport(a.outDir, report);
    return report;
  } finally {
    study.dispose();
  }
}
