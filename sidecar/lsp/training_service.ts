/**
 * `loraxs/train`, `loraxs/cancelTraining`, `loraxs/merge` and `loraxs/export`: one job at a time, in a
 * worker thread (job_worker.ts), with the engine's events forwarded as TrainProgressNotification and the
 * sidecar's state as StatusNotification (busy while a job runs). Refused in an untrusted workspace.
 */
import * as path from 'node:path';
import { LSPErrorCodes, ResponseError } from 'vscode-languageserver/node';
import type { CancellationToken, Connection } from 'vscode-languageserver/node';
import { CancelTrainingRequest, ExportRequest, MergeRequest, StatusNotification, TrainProgressNotification, TrainRequest } from '../protocol';
import { EXPORT_FORMATS } from '../engine/export_run';
import { startJob } from './job_worker';
import type { JobEvent, JobSpec, RunningJob } from './job_worker';
import { toResponseError } from './response_errors';
import { uriToPath } from './config_uri';

export const UNTRUSTED_MESSAGE =
  'LoRA-XS does not train, merge, export or read models in an untrusted workspace; trust the workspace (Workspaces: Manage Workspace Trust) to run it';

export interface JobServiceOptions {
  connection: Connection;
  /** The sidecar bundle, run as the job worker. */
  workerScript: string;
  trusted: () => boolean;
  /** Sends a status with the current backend filled in. */
  status: (state: StatusNotification.Params['state'], message?: string) => void;
}

interface Current {
  id: string;
  job: RunningJob;
}

function refuse(message: string): ResponseError<void> {
  return new ResponseError(LSPErrorCodes.RequestFailed, message);
}

export class JobService {
  private current: Current | null = null;

  constructor(private readonly o: JobServiceOptions) {}

  register(): void {
    const c = this.o.connection;
    c.onRequest(TrainRequest.type, (p, token) => this.train(p, token));
    c.onRequest(CancelTrainingRequest.type, (p) => this.cancel(p));
    c.onRequest(MergeRequest.type, (p, token) => this.merge(p, token));
    c.onRequest(ExportRequest.type, (p, token) => this.export(p, token));
  }

  /** Stops a running job at once (server shutdown). */
  async dispose(): Promise<void> {
    await this.current?.job.terminate();
    this.current = null;
  }

  private checkCanStart(): void {
    if (!this.o.trusted()) throw refuse(UNTRUSTED_MESSAGE);
    if (this.current) {
      const what = this.current.job.job.kind === 'train' ? 'a training run' : `a ${this.current.job.job.kind}`;
      throw refuse(`${what} is already running (${this.current.id}); cancel it or wait for it to finish before starting another`);
    }
  }

  /** Runs a job to its end; events go out as progress notifications with `runId` = `id`. */
  private async run<T>(id: string, spec: JobSpec, busyMessage: string, token: CancellationToken, finish: (r: Awaited<RunningJob['done']>) => T): Promise<T> {
    const c = this.o.connection;
    const forward = (e: JobEvent): void => {
      // Analysis rows and runs (ablation_service.ts) never come from train, merge or export jobs.
      if (e.kind === 'row' || e.kind === 'run') return;
      const params: TrainProgressNotification.Params = e.kind === 'log' ? { runId: id, kind: 'log', message: e.message }
        : e.kind === 'phase' ? { runId: id, kind: 'phase', phase: e.phase, done: e.done, total: e.total }
        : e.kind === 'step' ? { runId: id, kind: 'step', record: e.record }
        : { runId: id, kind: 'eval', record: e.record, best: e.best };
      void c.sendNotification(TrainProgressNotification.type, params);
    };
    const job = startJob(spec, this.o.workerScript, forward, (line) => c.console.log(`[${id}] ${line}`));
    this.current = { id, job };
    this.o.status('busy', busyMessage);
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

  async train(p: TrainRequest.Params, token: CancellationToken): Promise<TrainRequest.Result> {
    this.checkCanStart();
    const file = uriToPath(p.uri);
    const name = path.basename(file).replace(/\.loraxs\.ya?ml$/i, '');
    const runId = p.runId ?? `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    return this.run(runId, { kind: 'train', configFile: file, resume: p.resume === true }, `training ${name}`, token, (r) => {
      if (r.kind !== 'train') throw new Error(`internal error: a train job returned ${r.kind}`);
      const t = r.result;
      return {
        runId, output: t.output, adapterDir: t.adapterDir, steps: t.steps, cancelled: t.cancelled, best: t.best,
        totalSteps: t.totalSteps, trainableParams: t.trainableParams, adapterParams: t.adapterParams, adapterBytes: t.adapterBytes, seconds: t.seconds,
      };
    });
  }

  cancel(p: CancelTrainingRequest.Params): { cancelled: boolean } {
    if (!this.current || (p.runId !== undefined && p.runId !== this.current.id)) return { cancelled: false };
    this.current.job.cancel();
    return { cancelled: true };
  }

  async merge(p: MergeRequest.Params, token: CancellationToken): Promise<MergeRequest.Result> {
    this.checkCanStart();
    const id = p.jobId ?? `merge-${Date.now()}`;
    const spec: JobSpec = { kind: 'merge', configFile: uriToPath(p.uri), adapterDir: path.resolve(p.adapterDir), outDir: path.resolve(p.outDir) };
    return this.run(id, spec, `merging into ${path.basename(spec.outDir)}`, token, (r) => ({ outDir: r.kind === 'folder' ? r.outDir : spec.outDir }));
  }

  async export(p: ExportRequest.Params, token: CancellationToken): Promise<ExportRequest.Result> {
    this.checkCanStart();
    if (!(EXPORT_FORMATS as readonly string[]).includes(p.format)) {
      throw refuse(`export format must be one of ${EXPORT_FORMATS.join(', ')}, got '${String(p.format)}'`);
    }
    const id = p.jobId ?? `export-${Date.now()}`;
    const spec: JobSpec = {
      kind: 'export', adapterDir: path.resolve(p.adapterDir), modelDir: p.modelDir ? path.resolve(p.modelDir) : undefined,
      format: p.format, outDir: path.resolve(p.outDir),
    };
    return this.run(id, spec, `exporting ${p.format}`, token, (r) => ({ outDir: r.kind === 'folder' ? r.outDir : spec.outDir }));
  }
}
