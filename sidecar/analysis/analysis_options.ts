/**
 * What an analysis run is asked to do (the CLI flags of `loraxs ablate` and the params of `loraxs/ablate`),
 * with the config's `analysis:` section supplying the defaults.
 */
import * as path from 'node:path';
import type { ParsedConfig } from '../config/parse';
import type { InitKind } from '../config/types';
import { LoraxsError } from '../errors';
import { REGIONS, type Region } from './spectrum_regions';
import type { AnalysisKind, AnalysisRequest } from '../records';


/** The request with every default filled in. */
export interface ResolvedAnalysis {
  kind: AnalysisKind;
  adapterDir: string | null;
  baseDir: string | null;
  fractions: number[];
  regions: Region[];
  perLayer: boolean;
  evalLimit: number;
  seeds: number;
  inits: InitKind[];
  ranks: number[];
  targets: string[];
  /** `<output>/analysis` */
  outDir: string;
}

export const ANALYSIS_KINDS: readonly AnalysisKind[] = ['retention', 'delta', 'init', 'spectra'];
export const DEFAULT_INITS: readonly InitKind[] = ['svd', 'random', 'svd-of-random'];

export function resolveAnalysis(config: ParsedConfig, req: AnalysisRequest): ResolvedAnalysis {
  if (!ANALYSIS_KINDS.includes(req.kind)) throw new LoraxsError(`--kind must be one of ${ANALYSIS_KINDS.join(', ')}, got '${String(req.kind)}'`);
  const fractions = [...new Set(req.fractions ?? config.analysis.fractions)].sort((a, b) => a - b);
  for (const f of fractions) if (!(f >= 0 && f <= 1)) throw new LoraxsError(`fractions must lie in [0, 1], got ${f}`);
  const regions = req.regions ?? config.analysis.regions;
  for (const r of regions) if (!REGIONS.includes(r)) throw new LoraxsError(`regions must be top, middle or bottom, got '${String(r)}'`);
  const evalLimit = req.evalLimit ?? config.analysis.evalLimit;
  if (!Number.isInteger(evalLimit) || evalLimit < 1) throw new LoraxsError(`the evaluation limit must be a positive integer, got ${evalLimit}`);
  const seeds = req.seeds ?? config.analysis.seeds;
  if (!Number.isInteger(seeds) || seeds < 1) throw new LoraxsError(`seeds must be a positive integer, got ${seeds}`);
  const ranks = req.ranks ?? [config.adapter.rank];
  for (const r of ranks) if (!Number.isInteger(r) || r < 1) throw new LoraxsError(`ranks must be positive integers, got ${r}`);
  return {
    kind: req.kind,
    adapterDir: req.adapterDir ? path.resolve(req.adapterDir) : null,
    baseDir: req.baseDir ? path.resolve(req.baseDir) : null,
    fractions,
    regions: [...new Set(regions)],
    perLayer: req.perLayer === true,
    evalLimit,
    seeds,
    inits: req.inits ?? [...DEFAULT_INITS],
    ranks,
    targets: req.targets && req.targets.length ? req.targets : config.adapter.targets,
    outDir: path.join(config.output, 'analysis'),
  };
}
