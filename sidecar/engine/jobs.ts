/**
 * The one job runner both front ends use: `loraxs train|merge|export|ablate` (cli/) and the sidecar's job
 * worker thread (lsp/job_worker.ts). It does everything a job needs before and around its stage, in the
 * same order for both, so they behave the same:
 *
 *   1. the compute backend is initialised before any tensor is touched (a resume reads tensors);
 *   2. the config is loaded; its warnings are emitted as `log` events, `file:line:col: warning: ...`;
 *   3. the stage runs, its progress emitted as JobEvents, cancelled through `signal`;
 *   4. a LoraxsError about a config key gets its line and column (`file:line:col: message`).
 *
 * The front ends keep only how they show the events and the result.
 */
import * as path from 'node:path';
import { initBackend } from '../backend/choice';
import { loadConfig, placeConfigError, problemPlace, type ConfigProblem } from '../config/parse';
import { runTraining } from '../train/loop';
import { runAnalysis } from '../analysis/analysis_run';
import { mergeRun } from './merge_run';
import { exportRun } from './export_run';
import { eventCallbacks } from './events';
import { LoraxsError } from '../errors';
import type { AnalysisRequest, ExportFormat, JobEvent, JobResult } from '../records';

export type JobSpec =
  | { kind: 'train'; configFile: string; resume: boolean; headOnly?: boolean }
  | { kind: 'merge'; configFile: string; adapterDir: string; outDir: string }
  | { kind: 'export'; adapterDir: string; modelDir?: string; format: ExportFormat; outDir: string }
  | { kind: 'ablate'; configFile: string; request: AnalysisRequest };

export type JobKind = JobSpec['kind'];

/** `file:line:col: warning: message`, the form compilers use. */
export function warningText(file: string, p: ConfigProblem): string {
  return new LoraxsError(`warning: ${p.message}`, problemPlace(file, p)).format();
}

/**
 * Runs one job to its end. `emit` gets every event in order; `signal` asks it to stop at its next safe
 * point (training saves a checkpoint; an analysis keeps what it measured). Rejects with a LoraxsError for
 * bad input (placed at file:line:col when it is about a config key) and an Error for anything else.
 */
export async function runJob(spec: JobSpec, emit: (e: JobEvent) => void, signal?: AbortSignal): Promise<JobResult> {
  const configFile = 'configFile' in spec ? path.resolve(spec.configFile) : null;
  try {
    // `started` comes first; warnings of the backend and the config follow it.
    const backend = await initBackend();
    const warnings = backend.warning ? [`warning: ${backend.warning}`] : [];
    const events = eventCallbacks(emit);
    const begin = (output: string | null): void => {
      emit({ kind: 'started', job: spec.kind, config: configFile, output });
      for (const message of warnings.splice(0)) emit({ kind: 'log', message });
    };
    const load = (requireTraining: boolean) => {
      const config = loadConfig(configFile!, { requireTraining, onWarning: (p) => warnings.push(warningText(configFile!, p)) });
      begin(config.output);
      return config;
    };
    switch (spec.kind) {
      case 'train': {
        const config = load(true);
        return { kind: 'train', result: await runTraining(config, { resume: spec.resume, headOnly: spec.headOnly, events, signal }) };
      }
      case 'merge': {
        const config = load(false);
        return { kind: 'folder', outDir: await mergeRun(config, spec.adapterDir, spec.outDir, events) };
      }
      case 'export':
        begin(path.resolve(spec.outDir));
        return { kind: 'folder', outDir: await exportRun({ adapterDir: spec.adapterDir, modelDir: spec.modelDir, format: spec.format, outDir: spec.outDir }, events) };
      case 'ablate': {
        const config = load(spec.request.kind === 'init');
        return { kind: 'analysis', report: await runAnalysis(config, spec.request, events, signal) };
      }
    }
  } catch (e) {
    throw configFile ? placeConfigError(e, configFile) : e;
  }
}
