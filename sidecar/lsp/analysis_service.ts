/**
 * `loraxs/ablate`, `loraxs/cancelAblation` and `loraxs/readAnalysis`: analyses run one at a time in a
 * worker thread (engine/job_thread.ts, job kind `ablate`), so the server keeps answering while a sweep computes;
 * the engine's events go out as AblateProgressNotification. Refused in an untrusted workspace.
 */
import * as path from 'node:path';
import type { CancellationToken, Connection } from 'vscode-languageserver/node';
import { AblateProgressNotification, AblateRequest, CancelAblationRequest, ReadAnalysisRequest } from '../protocol';
import type { StatusNotification } from '../protocol';
import { loadConfig } from '../config/parse';
import { analysisDir, readReport } from '../analysis/ablation_results';
import type { JobEvent } from '../records';
import { JobSlot, refuse } from './job_slot';
import { toResponseError } from './response_errors';
import { UNTRUSTED_MESSAGE } from './job_service';
import { uriToPath } from './config_uri';

export interface AnalysisServiceOptions {
  connection: Connection;
  /** The sidecar bundle, run as the job worker. */
  workerScript: string;
  trusted: () => boolean;
  status: (state: StatusNotification.Params['state'], message?: string) => void;
}

export class AnalysisService {
  private readonly slot: JobSlot;

  constructor(private readonly o: AnalysisServiceOptions) {
    this.slot = new JobSlot(o);
  }

  register(): void {
    const c = this.o.connection;
    c.onRequest(AblateRequest.type, (p, token) => this.ablate(p, token));
    c.onRequest(CancelAblationRequest.type, (p) => this.cancel(p));
    c.onRequest(ReadAnalysisRequest.type, (p) => this.read(p));
  }

  async dispose(): Promise<void> {
    await this.slot.dispose();
  }

  async ablate(p: AblateRequest.Params, token: CancellationToken): Promise<AblateRequest.Result> {
    if (!this.o.trusted()) throw refuse(UNTRUSTED_MESSAGE);
    const current = this.slot.running;
    if (current) throw refuse(`an analysis is already running (${current.id}); cancel it or wait for it to finish`);
    const c = this.o.connection;
    const { uri, jobId, ...request } = p;
    const id = jobId ?? `${request.kind}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const forward = (e: JobEvent): void => {
      // An init comparison's trainings report their updates only through their evaluations and runs.
      if (e.kind !== 'step') void c.sendNotification(AblateProgressNotification.type, { ...e, jobId: id });
    };
    const file = uriToPath(uri);
    return this.slot.run(id, { kind: 'ablate', configFile: file, request }, `analysis: ${request.kind} of ${path.basename(file)}`, token, forward, (r) => {
      if (r.kind !== 'analysis') throw new Error(`internal error: an ablate job returned ${r.kind}`);
      return { ...r.report, jobId: id };
    });
  }

  cancel(p: CancelAblationRequest.Params): { cancelled: boolean } {
    return { cancelled: this.slot.cancel(p.jobId) };
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
