/**
 * The sweep shared by the retention and ΔW-projection ablations: for each module type, each view (all
 * layers at once, then each layer when asked), each fraction and region, replace the weights of the
 * view's modules, evaluate, and record one row. Fractions 0 and 1 do not depend on the region, so they are
 * evaluated once per view. Every value is cached as soon as it is measured (ablation_results.ts
 * CellCache), so a cancelled sweep resumes where it stopped; cancelling is checked before each evaluation.
 */
import * as tf from '../backend/tf';
import type { ModuleGroup } from './module_groups';
import type { Region } from './spectrum_regions';
import type { StudyModel } from './study_model';
import { CellCache } from './ablation_results';
import type { AblationRow, EngineEvents } from '../records';

/** Engine events plus one per measured row (streamed to the analysis panel). */
export interface AnalysisEvents extends EngineEvents {
  row?(row: AblationRow): void;
}

/** Only `aborted` is read (the LSP worker passes a flag in shared memory). */
export type CancelSignal = Pick<AbortSignal, 'aborted'>;

export interface SweepGrid {
  fractions: number[];
  regions: Region[];
  /** Also one layer at a time (besides all layers of a module type at once). */
  perLayer: boolean;
}

/** The weights of one module type, prepared for ablation (SVDs computed, ΔW formed...). */
export interface PreparedGroup {
  /** The ablated `<module>.weight` of one module; `owned` false when it is a tensor the caller keeps. */
  weightFor(moduleName: string, region: Region, fraction: number): { tensor: tf.Tensor; owned: boolean };
  dispose(): void;
}

export interface SweepOutcome {
  baseline: number;
  rows: AblationRow[];
  layers: number[];
  cancelled: boolean;
}

function cellKey(type: string, layer: number | null, region: Region, fraction: number): string {
  const r = fraction === 0 || fraction === 1 ? 'any' : region;
  return `${type}|${layer ?? 'all'}|${r}|${fraction}`;
}

export async function runSweep(
  phase: string,
  study: StudyModel,
  groups: ModuleGroup[],
  grid: SweepGrid,
  cache: CellCache,
  prepare: (group: ModuleGroup) => PreparedGroup,
  events: AnalysisEvents = {},
  signal?: CancelSignal,
): Promise<SweepOutcome> {
  const layers = [...new Set(groups.flatMap((g) => g.modules.map((m) => m.layer)).filter((l): l is number => l !== null))].sort((a, b) => a - b);
  const viewsOf = (g: ModuleGroup): Array<number | null> => {
    const own = [...new Set(g.modules.map((m) => m.layer))].filter((l): l is number => l !== null).sort((a, b) => a - b);
    return grid.perLayer ? [null, ...own] : [null];
  };
  const uniqueCells = (g: ModuleGroup): string[] => {
    const keys = new Set<string>();
    for (const layer of viewsOf(g)) for (const f of grid.fractions) for (const r of grid.regions) keys.add(cellKey(g.type, layer, r, f));
    return [...keys];
  };
  const allCells = groups.flatMap(uniqueCells);
  const total = 1 + allCells.length;
  // Cells measured before (a resumed sweep) count as done from the start.
  let done = allCells.filter((k) => cache.get(k) !== undefined).length + (cache.get('baseline') === undefined ? 0 : 1);
  events.progress?.(phase, done, total);
  const tick = (): void => events.progress?.(phase, ++done, total);

  let baseline = cache.get('baseline');
  if (baseline === undefined) {
    if (signal?.aborted) return { baseline: NaN, rows: [], layers, cancelled: true };
    baseline = study.evaluate();
    cache.set('baseline', baseline);
    tick();
  }

  const rows: AblationRow[] = [];
  for (const g of groups) {
    const missing = uniqueCells(g).filter((k) => cache.get(k) === undefined);
    if (missing.length && signal?.aborted) return { baseline, rows, layers, cancelled: true };
    const prepared = missing.length ? prepare(g) : null;
    try {
      for (const layer of viewsOf(g)) {
        const members = g.modules.filter((m) => layer === null || m.layer === layer);
        for (const fraction of grid.fractions) {
          for (const region of grid.regions) {
            const key = cellKey(g.type, layer, region, fraction);
            let value = cache.get(key);
            if (value === undefined) {
              if (signal?.aborted) return { baseline, rows, layers, cancelled: true };
              const overrides = new Map<string, tf.Tensor>();
              const owned: tf.Tensor[] = [];
              try {
                for (const m of members) {
                  const w = prepared!.weightFor(m.name, region, fraction);
                  overrides.set(`${m.name}.weight`, w.tensor);
                  if (w.owned) owned.push(w.tensor);
                }
                value = study.evaluate(overrides);
              } finally {
                tf.dispose(owned);
              }
              cache.set(key, value);
              tick();
              // Let the event loop deliver progress (and a CLI's Ctrl-C) between evaluations.
              await new Promise((resolve) => setImmediate(resolve));
            }
            const row: AblationRow = { module: g.type, layer, region, fraction, value };
            rows.push(row);
            events.row?.(row);
          }
        }
      }
    } finally {
      prepared?.dispose();
    }
  }
  return { baseline, rows, layers, cancelled: false };
}
