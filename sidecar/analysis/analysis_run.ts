/**
 * One entry for every analysis (`loraxs ablate`, `loraxs/ablate`): resolves the request against the
 * config's `analysis:` section and runs the retention or ΔW sweep, the init comparison or the spectra.
 * Results go to `<output>/analysis/<kind>.json` and `.csv`.
 */
import type { ParsedConfig } from '../config/parse';
import { resolveAnalysis } from './analysis_options';
import { runRetention } from './retention_run';
import { runDelta } from './delta_run';
import { runSpectra } from './spectra';
import { runInitComparison, type InitEvents } from './init_comparison';
import type { AnalysisEvents, CancelSignal } from './ablation_sweep';
import type { AnalysisReport, AnalysisRequest } from '../records';


export type AnalysisRunEvents = AnalysisEvents & InitEvents;

export async function runAnalysis(config: ParsedConfig, req: AnalysisRequest, events: AnalysisRunEvents = {}, signal?: CancelSignal): Promise<AnalysisReport> {
  const a = resolveAnalysis(config, req);
  switch (a.kind) {
    case 'retention':
      return runRetention(config, a, events, signal);
    case 'delta':
      return runDelta(config, a, events, signal);
    case 'spectra':
      return runSpectra(config, a, events, signal);
    case 'init':
      return runInitComparison(config, a, events, signal);
  }
}
