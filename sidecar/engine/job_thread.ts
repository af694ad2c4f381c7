/**
 * Long jobs run in a worker thread, so the thread that started them keeps answering while TensorFlow.js
 * computes: the language server (diagnostics, hover, cancel) runs train, merge and export there; the CLI
 * runs train there, so Ctrl-C and SIGTERM are seen at once, even while one long kernel runs
 * (a second signal then quits at once). The worker is the bundle itself (dist/sidecar.js or dist/cli.js),
 * started with `workerData.loraxsJob`; it posts the engine's events and the result back.
 *
 * Cancelling sets a flag in shared memory that the training loop reads at every update (as its
 * AbortSignal's `aborted`), because the worker's event loop does not run while it computes, so a message
 * would only arrive after the run.
 */
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { runJob, type JobSpec } from './jobs';
import { deserializeError, serializeError, type SerializedError } from './job_errors';
import type { JobEvent, JobResult } from '../records';

export type { JobSpec };

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

/** The worker's entry: runs `workerData.loraxsJob` and posts events, then the result or the error. */
export async function runJobWorker(): Promise<void> {
  const { loraxsJob: job, cancelFlag } = workerData as JobWorkerData;
  const port = parentPort!;
  const post = (m: WorkerMessage): void => port.postMessage(m);
  const flag = new Int32Array(cancelFlag);
  // The loop reads only `aborted`; it must see the flag without the event loop running.
  const signal = { get aborted() { return Atomics.load(flag, 0) === 1; } } as AbortSignal;
  try {
    post({ type: 'done', result: await runJob(job, (event) => post({ type: 'event', event }), signal) });
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
