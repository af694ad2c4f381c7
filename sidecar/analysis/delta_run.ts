/**
 * `loraxs ablate --kind delta`: ΔW between a fine-tuned model and its base, projected onto the base
 * weight's top / middle / bottom singular directions (delta_projection.ts), evaluated per module type.
 * The fine-tuned model is the config's model with `--adapter` merged (base: the config's model, unless
 * `--base` names another), or the config's model itself when it is a fully fine-tuned checkpoint and
 * `--base DIR` is its base. The ablated module's weight is W_base + ΔW_approx; every other module keeps
 * its fine-tuned weight, so fraction 1 is the fine-tuned model and fraction 0 puts the base weight back.
 */
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { RunConfig } from '../config/types';
import type { Weights } from '../models/types';
import { openCheckpoint, loadWeights } from '../io/model_folder';
import { groupModules } from './module_groups';
import { openStudyModel } from './study_model';
import { cachedExactSvd } from './exact_svd_cache';
import { fullBases, projectDelta, type FullBases } from './delta_projection';
import { runSweep, type AnalysisEvents, type CancelSignal, type PreparedGroup } from './ablation_sweep';
import { CellCache, writeAblationReport } from './ablation_results';
import type { ResolvedAnalysis } from './analysis_options';
import type { AblationReport } from '../records';

export async function runDelta(config: RunConfig, a: ResolvedAnalysis, events: AnalysisEvents = {}, signal?: CancelSignal): Promise<AblationReport> {
  const t0 = performance.now();
  if (!a.adapterDir && !a.baseDir) {
    throw new LoraxsError('--kind delta needs --adapter DIR (ΔW of an adapter) or --base DIR (the base of a fully fine-tuned model: the config\'s model)',
      { file: config.file, detail: 'model' });
  }
  const study = await openStudyModel(config, { adapterDir: a.adapterDir ?? undefined, evalLimit: a.evalLimit, events });
  let loaded: Weights | null = null;
  try {
    const groups = groupModules(study.session.backbone.linearModules(), a.targets, { file: config.file, detail: 'adapter.targets' });
    const names = groups.flatMap((g) => g.modules.map((m) => `${m.name}.weight`));
    let base: Weights;
    if (a.baseDir) {
      loaded = loadWeights(openCheckpoint(a.baseDir), names);
      for (const n of names) {
        const b = loaded.get(n)!;
        const f = study.weights.get(n)!;
        if (b.shape.join('x') !== f.shape.join('x')) {
          throw new LoraxsError(`${n} is [${b.shape.join(', ')}] in the base model but [${f.shape.join(', ')}] in ${config.model}`, { file: a.baseDir, detail: n });
        }
      }
      base = loaded;
    } else {
      base = study.session.backbone.weights; // the config's model before the adapter is merged
    }
    const cache = new CellCache(a.outDir, 'delta', `${study.setupKey}/${a.baseDir ?? 'config-model'}/${a.targets.join(',')}`);
    const prepare = (g: (typeof groups)[number]): PreparedGroup => {
      const bases = new Map<string, FullBases>();
      const deltas = new Map<string, tf.Tensor2D>();
      try {
        g.modules.forEach((m, i) => {
          const key = `${m.name}.weight`;
          const Wb = base.get(key)! as tf.Tensor2D;
          const { svd } = cachedExactSvd(Wb.dataSync() as Float32Array, m.outFeatures, m.inFeatures, m.name);
          bases.set(m.name, fullBases(svd));
          deltas.set(m.name, tf.sub(study.weights.get(key)!, Wb) as tf.Tensor2D);
          events.progress?.(`exact SVD of ${g.type}`, i + 1, g.modules.length);
        });
      } catch (e) {
        bases.forEach((b) => b.dispose());
        tf.dispose([...deltas.values()]);
        throw e;
      }
      return {
        weightFor(name, region, fraction) {
          const key = `${name}.weight`;
          if (fraction === 1) return { tensor: study.weights.get(key)!, owned: false };
          if (fraction === 0) return { tensor: base.get(key)!, owned: false };
          const t = tf.tidy(() => tf.add(base.get(key)!, projectDelta(deltas.get(name)!, bases.get(name)!, region, fraction)));
          return { tensor: t, owned: true };
        },
        dispose() {
          bases.forEach((b) => b.dispose());
          tf.dispose([...deltas.values()]);
        },
      };
    };
    const out = await runSweep('delta', study, groups, a, cache, prepare, events, signal);
    const report: AblationReport = {
      kind: 'delta', metric: study.metric, higherIsBetter: study.higherIsBetter, baseline: out.baseline,
      model: config.model, adapter: a.adapterDir, base: a.baseDir ?? config.model, evalExamples: study.examples.length,
      modules: groups.map((g) => g.type), layers: out.layers, fractions: a.fractions, regions: a.regions,
      results: out.rows, cancelled: out.cancelled, seconds: (performance.now() - t0) / 1000,
    };
    writeAblationReport(a.outDir, report);
    return report;
  } finally {
    if (loaded) for (const t of loaded.values()) t.dispose();
    study.dispose();
  }
}
