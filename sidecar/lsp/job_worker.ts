/**
 * Long jobs (train, merge, export) run in a worker thread, so the language server keeps answering
 * (diagnostics, hover, cancel) while TensorFlow.js computes. The worker is the sidecar bundle itself,
 * started with `workerData.loraxsJob`; it posts the engine's events and the result back.
 *
 * Cancelling sets a flag in shared memory that the training loop reads at every update (as its
 * AbortSignal's `aborted`), because the worker's event loop does not run while it computes, so a message
 * would only arrive after the run.
 */
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { loadConfig } from '../config/parse';
import type { EngineEvents, EvalRecord, StepRecord } from '../engine/events';
import { mergeRun } from '../engine/merge_run';
import { exportRun } from '../engine/export_run';
import type { ExportFormat } from '../engine/export_run';
import { runTraining } from '../train/loop';
import type { TrainResult } from '../train/loop';
import { deserializeError, serializeError } from './response_errors';
import { runAnalysis, type AnalysisReport } from '../analysis/analysis_run';
import type { AnalysisRequest } from '../analysis/analysis_options';
import type { AblationRow } from '../analysis/ablation_results';
import type { InitRun } from '../analysis/init_comparison';
import type { SerializedError } from './response_errors';

export type JobSpec =
  | { kind: 'train'; configFile: string; resume: boolean }
  | { kind: 'merge'; configFile: string; adapterDir: string; outDir: string }
  | { kind: 'export'; adapterDir: string; modelDir?: string; format: ExportFormat; outDir: string }
  | { kind: 'ablate'; configFile: string; request: AnalysisRequest };

export type JobEvent =
  | { kind: 'log'; message: string }
  | { kind: 'phase'; phase: string; done: number; total: number }
  | { kind: 'step'; record: StepRecord }
  | { kind: 'eval'; record: EvalRecord; best: boolean }
  | { kind: 'row'; row: AblationRow }
  | { kind: 'run'; run: InitRun };

/** What a job resolves to: a TrainResult for `train`, the output folder for merge and export. */
export type JobResult = { kind: 'train'; result: TrainResult } | { kind: 'folder'; outDir: string } | { kind: 'analysis'; report: AnalysisReport };

type WorkerMessage =
  | { type: 'event'; event: JobEvent }
  | { type: 'done'; result: JobResult }
  | { type: 'error'; error: SerializedError };

interface JobWorkerData {
  loraxsJob: JobSpec;
  /** Int32Array(1) over shared memory: 1 = cancel requested. */
  cancelFlag: SharedArrayBuffer;
}

/** Whether this thread was started as a job worker. */
export function isJobWorker(): boolean {
  return parentPort !== null && typeof (workerData as Partial<JobWorkerData> | null)?.loraxsJob === 'object';
}

// ---------------------------------------------------------------------------------------------------
// Worker side

async function runJob(job: JobSpec, events: EngineEvents, signal: AbortSignal, post: (e: JobEvent) => void): Promise<JobResult> {
  switch (job.kind) {
    case 'train': {
      const config = loadConfig(job.configFile, { requireTraining: true, onWarning: (p) => events.log?.(`warning: ${p.message}`) });
      return { kind: 'train', result: await runTraining(config, { resume: job.resume, events, signal }) };
    }
    case 'merge': {
      const config = loadConfig(job.configFile, { requireTraining: false });
      return { kind: 'folder', outDir: await mergeRun(config, job.adapterDir, job.outDir, events) };
    }
    case 'export':
      return { kind: 'folder', outDir: await exportRun({ adapterDir: job.adapterDir, modelDir: job.modelDir, format: job.format, outDir: job.outDir }, events) };
    case 'ablate': {
      const config = loadConfig(job.configFile, { requireTraining: job.request.kind === 'init', onWarning: (p) => events.log?.(`warning: ${p.message}`) });
      const report = await runAnalysis(config, job.request, {
        ...events, row: (row) => post({ kind: 'row', row }), run: (run) => post({ kind: 'run', run }),
      }, signal);
      return { kind: 'analysis', report };
    }
  }
}

/** The worker's entry: runs `workerData.loraxsJob` and posts events, then the result or the error. */
export async function runJobWorker(): Promise<void> {
  const { loraxsJob: job, cancelFlag } = workerData as JobWorkerData;
  const port = parentPort!;
  const post = (m: WorkerMessage): void => port.postMessage(m);
  const flag = new Int32Array(cancelFlag);
  // The loop reads only `aborted`; it must see the flag without the event loop running.
  const signal = { get aborted() { return Atomics.load(flag, 0) === 1; } } as AbortSignal;
  const events: EngineEvents = {
    log: (message) => post({ type: 'event', event: { kind: 'log', message } }),
    progress: (phase, done, total) => post({ type: 'event', event: { kind: 'phase', phase, done, total } }),
    step: (record) => post({ type: 'event', event: { kind: 'step', record } }),
    eval: (record, best) => post({ type: 'event', event: { kind: 'eval', record, best } }),
  };
  try {
    post({ type: 'done', result: await runJob(job, events, signal, (event) => post({ type: 'event', event })) });
  } catch (e) {
    post({ type: 'error', error: serializeError(e) });
  }
}

// ---------------------------------------------------------------------------------------------------
// Server side

export interface RunningJob {
  readonly job: JobSpec;
  readonly done: Promise<JobResult>;
  /** Asks the job to stop at its next safe point (training saves a checkpoint). */
  cancel(): void;
  /** Stops the worker at once (server shutdown). */
  terminate(): Promise<void>;
}

/**
 * Starts `job` in a worker running `script` (the sidecar bundle). `onEvent` gets the engine's events;
 * `log` the worker's stdout/stderr lines (which must not reach the LSP stream). `done` rejects with a
 * LoraxsError for bad input and an Error for anything else.
 */
export function startJob(job: JobSpec, script: string, onEvent: (e: JobEvent) => void, log: (line: string) => void): RunningJob {
  const cancelFlag = new SharedArrayBuffer(4);
  const worker = new Worker(script, { workerData: { loraxsJob: job, cancelFlag } satisfies JobWorkerData, stdout: true, stderr: true });
  for (const stream of [worker.stdout, worker.stderr]) {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) log(line);
    });
  }
  const done = new Promise<JobResult>((resolve, reject) => {
    let settled = false;
    const settle = (f: () => void): void => {
      if (!settled) {
        settled = true;
        f();
      }
    };
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'event') onEvent(m.event);
      else if (m.type === 'done') settle(() => resolve(m.result));
      else settle(() => reject(deserializeError(m.error)));
    });
    worker.on('error', (e) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`the ${job.kind} worker exited with code ${code} before finishing`))));
  });
  // The worker ends by itself after posting; make sure it does not linger.
  void done.then(() => worker.terminate(), () => worker.terminate());
  return {
    job,
    done,
    cancel: () => Atomics.store(new Int32Array(cancelFlag), 0, 1),
    terminate: async () => {
      await worker.terminate();
    },
  };
}
