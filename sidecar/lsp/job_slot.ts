/**
 * One job at a time in a worker thread (engine/job_thread.ts): starting it with its events forwarded, the
 * sidecar's status busy while it runs and idle after, cancelling it by id, stopping it at shutdown.
 * The training service (train, merge, export) and the ablation service each own one slot.
 */
import { LSPErrorCodes, ResponseError } from 'vscode-languageserver/node';
import type { CancellationToken, Connection } from 'vscode-languageserver/node';
import type { StatusNotification } from '../protocol';
import { startJob } from '../engine/job_thread';
import type { JobSpec, RunningJob } from '../engine/job_thread';
import type { JobEvent } from '../records';
import { toResponseError } from './response_errors';

export interface JobSlotOptions {
  connection: Connection;
  /** The sidecar bundle, run as the job worker. */
  workerScript: string;
  /** Sends a status with the current backend filled in (or `busy`'s: a launch's torch, processes, device). */
  status: (state: StatusNotification.Params['state'], message?: string, busy?: Pick<StatusNotification.Params, 'backend' | 'processes' | 'device'>) => void;
}

/** A request refused before it starts (untrusted workspace, a job already running). */
export function refuse(message: string): ResponseError<void> {
  return new ResponseError(LSPErrorCodes.RequestFailed, message);
}

export class JobSlot {
  private current: { id: string; job: RunningJob } | null = null;

  constructor(private readonly o: JobSlotOptions) {}

  /** The job running now, if any. */
  get running(): { id: string; job: RunningJob } | null {
    return this.current;
  }

  /**
   * Runs a job to its end: `forward` sends its events on, the request's cancellation cancels it, and
   * `finish` turns its result into the reply (errors become ResponseErrors).
   */
  async run<T>(id: string, spec: JobSpec, busyMessage: string, token: CancellationToken, forward: (e: JobEvent) => void,
    finish: (r: Awaited<RunningJob['done']>) => T, busy?: Parameters<JobSlotOptions['status']>[2]): Promise<T> {
    const c = this.o.connection;
    const job = startJob(spec, this.o.workerScript, forward, (line) => c.console.log(`[${id}] ${line}`));
    this.current = { id, job };
    this.o.status('busy', busyMessage, busy);
    const onCancel = token.onCancellationRequested(() => job.cancel());
    try {
      return finish(await job.done);
    } catch (e) {
      throw toResponseError(e, c.console);
    } finally {
      onCancel.dispose();
      this.current = null;
      this.o.status('idle');
    }
  }

  /** Cancels the running job (the one with `id` when given); false when there is none. */
  cancel(id: string | undefined): boolean {
    if (!this.current || (id !== undefined && id !== this.current.id)) return false;
    this.current.job.cancel();
    return true;
  }

  /**
   * Stops a running job at once (server shutdown). A launch is cancelled first, so that its process group
   * gets SIGTERM (and checkpoints) rather than outliving the sidecar untold.
   */
  async dispose(): Promise<void> {
    const job = this.current?.job;
    if (job?.job.kind === 'launch') {
      job.cancel();
      await Promise.race([job.done.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    }
    await job?.terminate();
    this.current = null;
  }
}
