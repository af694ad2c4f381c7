/**
 * `loraxs/ablate`, `loraxs/cancelAblation` and `loraxs/readAnalysis`: analyses run one at a time in a
 * worker thread (job_worker.ts, job kind `ablate`), so the server keeps answering while a sweep computes;
 * the engine's events go out as AblateProgressNotification. Refused in an untrusted workspace.
 */
import * as path from 'node:path';
import { LSPErrorCodes, ResponseError } from 'vscode-languageserver/node';
import type { CancellationToken, Connection } from 'vscode-languageserver/node';
import { AblateProgressNotification, AblateRequest, CancelAblationRequest, ReadAnalysisRequest } from '../protocol';
import type { StatusNotification } from '../protocol';
import { loadConfig } from '../config/parse';
import { analysisDir, readReport } from '../analysis/ablation_results';
import { startJob } from './job_worker';
import type { JobEvent, RunningJob } from './job_worker';
import { toResponseError } from './response_errors';
import { UNTRUSTED_MESSAGE } from './training_service';
import { uriToPath } from './config_uri';

export interface AblationServiceOptions {
  connection: Connection;
  /** The sidecar bundle, run as the job worker. */
  workerScript: string;
  trusted: () => boolean;
  status: (state: StatusNotification.Params['state'], message?: string) => void;
}

function refuse(message: string): ResponseError<void> {
  return new ResponseError(LSPErrorCodes.RequestFailed, message);
}

export class AblationService {
  private current: { id: string; job: RunningJob } | null = null;

  constructor(private readonly o: AblationServiceOptions) {}

  register(): void {
    const c = this.o.connection;
    c.onRequest(AblateRequest.type, (p, token) => this.ablate(p, token));
    c.onRequest(CancelAblationRequest.type, (p) => this.cancel(p));
    c.onRequest(ReadAnalysisRequest.type, (p) => this.read(p));
  }

  async dispose(): Promise<void> {
    await this.current?.job.terminate();
    this.current = null;
  }

  async ablate(p: AblateRequest.Params, token: CancellationToken): Promise<AblateRequest.Result> {
    if (!this.o.trusted()) throw refuse(UNTRUSTED_MESSAGE);
    if (this.current) throw refuse(`an analysis is already running (${this.current.id}); cancel it or wait for it to finish`);
    const c = this.o.connection;
    const { uri, jobId, ...request } = p;
    const id = jobId ?? `${request.kind}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const forward = (e: JobEvent): void => {
      let params: AblateProgressNotification.Params | null = null;
      if (e.kind === 'phase') params = { jobId: id, kind: 'phase', phase: e.phase, done: e.done, total: e.total };
      else if (e.kind === 'log') params = { jobId: id, kind: 'log', message: e.message };
      else if (e.kind === 'row') params = { jobId: id, kind: 'row', row: e.row };
      else if (e.kind === 'run') params = { jobId: id, kind: 'run', run: e.run };
      else if (e.kind === 'eval') params = { jobId: id, kind: 'eval', record: e.record };
      if (params) void c.sendNotification(AblateProgressNotification.type, params);
    };
    const job = startJob({ kind: 'ablate', configFile: uriToPath(uri), request }, this.o.workerScript, forward, (line) => c.console.log(`[${id}] ${line}`));
    this.current = { id, job };
    this.o.status('busy', `analysis: ${request.kind} of ${path.basename(uriToPath(uri))}`);
    const onCancel = token.onCancellationRequested(() => job.cancel());
    try {
      const r = await job.done;
      if (r.kind !== 'analysis') throw new Error(`internal error: an ablate job returned ${r.kind}`);
      return { ...r.report, jobId: id };
    } catch (e) {
      throw toResponseError(e, c.console);
    } finally {
      onCancel.dispose();
      this.current = null;
      this.o.status('idle');
    }
  }

  cancel(p: CancelAblationRequest.Params): { cancelled: boolean } {
    if (!this.current || (p.jobId !== undefined && p.jobId !== this.current.id)) return { cancelled: false };
    this.current.job.cancel();
    return { cancelled: true };
  }

  read(p: ReadAnalysisRequest.Params): ReadAnalysisRequest.Result {
    try {
      if (!this.o.trusted()) throw refuse(UNTRUSTED_MESSAGE);
      const config = loadConfig(uriToPath(p.uri), { requireTraining: false });
      const dir = analysisDir(config.output);
      return { dir, retention: readReport(dir, 'retention'), delta: readReport(dir, 'delta'), init: readReport(dir, 'init'), spectra: readReport(dir, 'spectra') };
    } catch (e) {
      throw toResponseError(e, this.o.connection.console);
    }
  }
}
