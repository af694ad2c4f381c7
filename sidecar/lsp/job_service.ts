/**
 * `loraxs/train` (the engine, or `launch` for a config with `compute.backend: torch`), `loraxs/cancelTraining`,
 * `loraxs/merge`, `loraxs/export` and `loraxs/eval`: one job at a time, in a
 * worker thread (engine/job_thread.ts), with the engine's events forwarded as TrainProgressNotification and the
 * sidecar's state as StatusNotification (busy while a job runs). Refused in an untrusted workspace.
 * An output that exists is refused by the job's pre-flight with OutputErrorData `output-exists` unless the
 * request says `overwrite` (or, training, `resume`): the client asks the user and sends it again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CancellationToken, Connection } from 'vscode-languageserver/node';
import { CancelTrainingRequest, EvalRequest, ExportRequest, MergeRequest, StatusNotification, TrainProgressNotification, TrainRequest } from '../protocol';
import { EXPORT_FORMATS } from '../records';
import type { JobSpec, RunningJob } from '../engine/job_thread';
import type { JobEvent } from '../records';
import { JobSlot, refuse } from './job_slot';
import { uriToPath } from './config_uri';
import { parseConfigText } from '../config/parse';
import type { ComputeConfig } from '../config/types';

export const UNTRUSTED_MESSAGE =
  'LoRA-XS does not train, merge, export or read models in an untrusted workspace; trust the workspace (Workspaces: Manage Workspace Trust) to run it';

export interface JobServiceOptions {
  connection: Connection;
  /** The sidecar bundle, run as the job worker. */
  workerScript: string;
  trusted: () => boolean;
  /** Sends a status with the current backend filled in (or `busy`'s). */
  status: (state: StatusNotification.Params['state'], message?: string, busy?: Busy) => void;
}

/** A job's own compute in the status (a launch: torch, processes, device). */
export type Busy = Pick<StatusNotification.Params, 'backend' | 'processes' | 'device'>;

/** The config's `compute:` section, read from the file (null when absent or unreadable: the job reports why). */
function computeOf(file: string): ComputeConfig | null {
  try {
    return parseConfigText(fs.readFileSync(file, 'utf8'), file).config?.compute ?? null;
  } catch {
    return null;
  }
}

export class JobService {
  private readonly slot: JobSlot;

  constructor(private readonly o: JobServiceOptions) {
    this.slot = new JobSlot(o);
  }

  register(): void {
    const c = this.o.connection;
    c.onRequest(TrainRequest.type, (p, token) => this.train(p, token));
    c.onRequest(CancelTrainingRequest.type, (p) => this.cancel(p));
    c.onRequest(MergeRequest.type, (p, token) => this.merge(p, token));
    c.onRequest(ExportRequest.type, (p, token) => this.export(p, token));
    c.onRequest(EvalRequest.type, (p, token) => this.evaluate(p, token));
  }

  /** Stops a running job at once (server shutdown). */
  async dispose(): Promise<void> {
    await this.slot.dispose();
  }

  private checkCanStart(): void {
    if (!this.o.trusted()) throw refuse(UNTRUSTED_MESSAGE);
    const current = this.slot.running;
    if (current) {
      const what = current.job.job.kind === 'train' || current.job.job.kind === 'launch' ? 'a training run' : `a ${current.job.job.kind}`;
      throw refuse(`${what} is already running (${current.id}); cancel it or wait for it to finish before starting another`);
    }
  }

  /**
   * Runs a job to its end; events go out as progress notifications with `runId` = `id`. `busy`: what the
   * status says instead of the engine's backend (a launch: torch, its processes and device).
   */
  private run<T>(id: string, spec: JobSpec, busyMessage: string, token: CancellationToken, finish: (r: Awaited<RunningJob['done']>) => T, busy?: Busy): Promise<T> {
    const forward = (e: JobEvent): void => {
      // Analysis rows and runs (analysis_service.ts) never come from train, merge or export jobs.
      if (e.kind !== 'row' && e.kind !== 'run') void this.o.connection.sendNotification(TrainProgressNotification.type, { ...e, runId: id });
      // The trainer's update lines name its processes and device.
      if (busy && e.kind === 'step' && (e.record.device !== busy.device || e.record.processes !== busy.processes)) {
        busy = { ...busy, device: e.record.device, processes: e.record.processes };
        this.o.status('busy', busyMessage, busy);
      }
    };
    return this.slot.run(id, spec, busyMessage, token, forward, finish, busy);
  }

  /**
   * Trains the config: with the engine, or, when its `compute.backend` is `torch`, through `loraxs launch`
   * (a `launch` job: PyTorch + Accelerate in their own process group); the status then names torch, the
   * processes and, from the first update on, their device.
   */
  async train(p: TrainRequest.Params, token: CancellationToken): Promise<TrainRequest.Result> {
    this.checkCanStart();
    const file = uriToPath(p.uri);
    const name = path.basename(file).replace(/\.loraxs\.ya?ml$/i, '');
    const runId = p.runId ?? `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const compute = computeOf(file);
    const resume = p.resume === true;
    const overwrite = p.overwrite === true;
    if (compute?.backend === 'torch') {
      const torch: Busy = { backend: 'torch', processes: compute.processes };
      return this.run(runId, { kind: 'launch', configFile: file, options: { resume, overwrite } }, `training ${name}`, token, (r) => {
        if (r.kind !== 'launch' || !r.result.train) throw new Error(`internal error: a launch job returned ${r.kind}`);
        return { ...r.result.train, runId };
      }, torch);
    }
    return this.run(runId, { kind: 'train', configFile: file, resume, overwrite }, `training ${name}`, token, (r) => {
      if (r.kind !== 'train') throw new Error(`internal error: a train job returned ${r.kind}`);
      return { ...r.result, runId };
    });
  }

  cancel(p: CancelTrainingRequest.Params): { cancelled: boolean } {
    return { cancelled: this.slot.cancel(p.runId) };
  }

  async evaluate(p: EvalRequest.Params, token: CancellationToken): Promise<EvalRequest.Result> {
    this.checkCanStart();
    const file = uriToPath(p.uri);
    const runId = `eval-${Date.now()}`;
    const spec: JobSpec = { kind: 'eval', configFile: file, adapterDir: p.adapterDir ? path.resolve(p.adapterDir) : undefined };
    return this.run(runId, spec, `evaluating ${path.basename(file)}`, token, (r) => {
      if (r.kind !== 'metrics') throw new Error(`internal error: an eval job returned ${r.kind}`);
      return { runId, metrics: r.metrics };
    });
  }

  async merge(p: MergeRequest.Params, token: CancellationToken): Promise<MergeRequest.Result> {
    this.checkCanStart();
    const id = p.jobId ?? `merge-${Date.now()}`;
    const spec: JobSpec = { kind: 'merge', configFile: uriToPath(p.uri), adapterDir: path.resolve(p.adapterDir), outDir: path.resolve(p.outDir), overwrite: p.overwrite === true };
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
      format: p.format, outDir: path.resolve(p.outDir), overwrite: p.overwrite === true,
    };
    return this.run(id, spec, `exporting ${p.format}`, token, (r) => ({ outDir: r.kind === 'folder' ? r.outDir : spec.outDir }));
  }
}
