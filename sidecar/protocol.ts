/**
 * Every custom request and notification between the extension and the sidecar, and every message between
 * the extension and its webviews. Both ends import these objects; no method string is typed elsewhere.
 * Imports only vscode-languageserver-protocol and the record types (records.ts), so neither side pulls in
 * the other's runtime, and the extension and the webviews never see engine code.
 */
import { NotificationType, RequestType } from 'vscode-languageserver-protocol';
import type { AblationReport, AnalysisKind, AnalysisReport, AnalysisRequest, ExportFormat, InitReport, JobEvent, MetricsRecord, ParamsReport, SpectraReport, TrainResult } from './records';

/** Sidecar health, shown in the status bar (server -> client). */
export namespace StatusNotification {
  export const method = 'loraxs/status';
  export interface Params {
    state: 'starting' | 'idle' | 'busy' | 'error';
    backend?: string;
    /** wasm: the threads of its pool. */
    threads?: number;
    /** While a launch runs (`backend: torch`): its processes, and their device once the first update names it. */
    processes?: number;
    device?: string;
    message?: string;
    /** A failure that will repeat on restart (no backend, broken install): the client does not restart. */
    fatal?: boolean;
  }
  export const type = new NotificationType<Params>(method);
}

/** Start training the config at `uri` (client -> server). Resolves when the run ends. */
export namespace TrainRequest {
  export const method = 'loraxs/train';
  export interface Params {
    uri: string;
    resume?: boolean;
    /**
     * Replace the config's output folder when LoRA-XS wrote it. Without it (and without `resume`) an
     * existing output is refused with OutputErrorData `output-exists` (see there).
     */
    overwrite?: boolean;
    /** The id progress notifications carry; default: `<config name>-<time>`. */
    runId?: string;
  }
  /** The engine's TrainResult and the run's id. */
  export type Result = TrainResult & { runId: string };
  export const type = new RequestType<Params, Result, void>(method);
}

/**
 * Cancel the running training (or merge / export); training saves a checkpoint first and its TrainRequest
 * resolves with `cancelled: true` (client -> server). `cancelled` is false when nothing was running.
 */
export namespace CancelTrainingRequest {
  export const method = 'loraxs/cancelTraining';
  export interface Params {
    runId?: string;
  }
  export const type = new RequestType<Params, { cancelled: boolean }, void>(method);
}

/** Progress of a run (server -> client), forwarded to the training panel. */
export namespace TrainProgressNotification {
  export const method = 'loraxs/trainProgress';
  /** A JobEvent of the run (train, merge or export) with its id, as the job runner emitted it. */
  export type Params = JobEvent & { runId: string };
  export const type = new NotificationType<Params>(method);
}

// ---------------------------------------------------------------------------------------------------
// Added with the language server (issue 4).

/** `initializationOptions` the client sends in `initialize` (client -> server). */
export interface InitializationOptions {
  /**
   * Whether the workspace is trusted. Untrusted (or absent): only YAML syntax and schema diagnostics run;
   * nothing reads model or data files, and train / merge / export are refused.
   */
  trusted?: boolean;
  /** Delay between the last edit of a config and its diagnostics, in ms (default 250). */
  diagnosticsDelayMs?: number;
}

/** The workspace's trust changed (client -> server); diagnostics of open configs are recomputed. */
export namespace SetTrustedNotification {
  export const method = 'loraxs/setTrusted';
  export interface Params {
    trusted: boolean;
  }
  export const type = new NotificationType<Params>(method);
}

/**
 * Commands the code lenses above a config invoke; the client registers them. Each gets one argument:
 * the config's URI (string).
 */
export const CodeLensCommands = {
  fineTune: 'loraxs.fineTune',
  ablate: 'loraxs.ablate',
} as const;

/** `loraxs params` for the config at `uri`, from its editor text when open (client -> server). */
export namespace ParamsRequest {
  export const method = 'loraxs/params';
  export interface Params {
    uri: string;
  }
  export type Result = ParamsReport;
  export const type = new RequestType<Params, Result, void>(method);
}


/** The records of `<output>/metrics.jsonl`, so the training panel can rebuild after a reload (client -> server). */
export namespace ReadMetricsRequest {
  export const method = 'loraxs/readMetrics';
  export interface Params {
    /** The run's output folder (TrainRequest.Result.output); or give `uri`, a config, to use its output. */
    output?: string;
    uri?: string;
  }
  export interface Result {
    /** Absolute output folder read. */
    output: string;
    /** Empty when there is no metrics.jsonl yet. */
    records: MetricsRecord[];
  }
  export const type = new RequestType<Params, Result, void>(method);
}

/**
 * Merge an adapter into the base model of the config at `uri`: a new Hugging Face folder (client -> server).
 * Progress comes as TrainProgressNotification `log` / `phase` with `runId` = `jobId`.
 */
export namespace MergeRequest {
  export const method = 'loraxs/merge';
  export interface Params {
    uri: string;
    adapterDir: string;
    outDir: string;
    /** Replace `outDir` when LoRA-XS wrote it (never another folder). */
    overwrite?: boolean;
    jobId?: string;
  }
  export interface Result {
    outDir: string;
  }
  export const type = new RequestType<Params, Result, void>(method);
}

/**
 * Evaluate on the config's validation set (client -> server): a saved adapter, or without `adapterDir` the
 * base model (classification then needs a checkpoint with its head). Runs as a job (one at a time, like
 * training); progress as for MergeRequest.
 */
export namespace EvalRequest {
  export const method = 'loraxs/eval';
  export interface Params {
    uri: string;
    adapterDir?: string;
  }
  export interface Result {
    runId: string;
    /** The task's metrics (accuracy, pearson, loss, ...). */
    metrics: Record<string, number>;
  }
  export const type = new RequestType<Params, Result, void>(method);
}

/**
 * Export an adapter in another layout (client -> server). Progress as for MergeRequest.
 * `format`: 'peft-lora' | 'loraxs-official' | 'loraxs-factors'.
 */
export namespace ExportRequest {
  export const method = 'loraxs/export';
  export interface Params {
    adapterDir: string;
    /** Base model folder; default: the path recorded in the adapter. */
    modelDir?: string;
    format: ExportFormat;
    outDir: string;
    /** Replace `outDir` when LoRA-XS wrote it (never another folder). */
    overwrite?: boolean;
    jobId?: string;
  }
  export interface Result {
    outDir: string;
  }
  export const type = new RequestType<Params, Result, void>(method);
}

/**
 * The `data` of the ResponseError of a train, merge or export request refused because of where it would
 * write, or failed on the filesystem (the message says the same in words: `path: what; what to do`):
 * - `output-exists`: the output folder holds LoRA-XS output and the request said neither `overwrite` nor
 *   (training) `resume`. The client may ask the user and send the request again with `overwrite: true`,
 *   or `resume: true` when `resumable` (the folder holds a checkpoint).
 * - `output-refused`: never writable there (`why`: a folder LoRA-XS did not write, a file, the current
 *   folder, one of the job's inputs); `overwrite` does not help.
 * - `filesystem`: an errno error (`errno`: EACCES, EROFS, ENOSPC, ...) at `path`.
 * `exitCode` is what the CLI exits with for the same error (73: cannot create there; 74: I/O error).
 */
export type OutputErrorData =
  | { kind: 'output-exists'; output: string; writer: string | null; resumable: boolean; exitCode: number }
  | { kind: 'output-refused'; output: string; why: 'foreign' | 'not-a-folder' | 'cwd' | 'input'; exitCode: number }
  | { kind: 'filesystem'; path: string; errno: string; exitCode: number };

/** Whether a ResponseError's `data` is OutputErrorData `output-exists`. */
export function isOutputExists(data: unknown): data is Extract<OutputErrorData, { kind: 'output-exists' }> {
  const d = data as { kind?: unknown; output?: unknown } | null;
  return typeof d === 'object' && d !== null && d.kind === 'output-exists' && typeof d.output === 'string';
}

// ---------------------------------------------------------------------------------------------------
// Added with the extension client (issue 4): the rest of the training panel's messages.

/**
 * Messages from the extension to the training panel:
 * - `reset`: a new live run (its progress follows as `progress`).
 * - `progress`: a progress notification of that run, passed on as it came.
 * - `load`: a run rebuilt from its metrics.jsonl (after a window reload, or "Show Training Results");
 *   replaces what the panel holds for that run.
 * - `finished`: the run ended; the panel shows its result.
 * - `failed`: the run stopped with an error (`file:line:col: message`).
 */
export type TrainingPanelUpdate =
  | { type: 'reset'; runId: string; title: string; output?: string }
  | { type: 'progress'; progress: TrainProgressNotification.Params }
  | { type: 'load'; runId: string; title: string; output: string; records: MetricsRecord[] }
  | { type: 'finished'; runId: string; result: TrainRequest.Result }
  | { type: 'failed'; runId: string; message: string };

/** Messages from the training panel to the extension: it has loaded (and restored its state). */
export type TrainingPanelRequest = { type: 'ready'; runs: Array<{ runId: string; output?: string }> };

// ---------------------------------------------------------------------------------------------------
// Added with the singular-value analyses (issue 5).

/**
 * Run an analysis of the config at `uri` (client -> server): retention ablation, ΔW projection, init
 * comparison or spectra (sidecar/analysis). Runs in a worker; resolves with the report (also written to
 * `<output>/analysis/<kind>.json` and `.csv`). Progress comes as AblateProgressNotification with `jobId`.
 * Cancelling (CancelAblationRequest or the request's own cancellation) stops after the current
 * evaluation and resolves with `cancelled: true`; measured cells are cached, so the same request resumes.
 */
export namespace AblateRequest {
  export const method = 'loraxs/ablate';
  export interface Params extends AnalysisRequest {
    uri: string;
    /** The id progress notifications carry; default `<kind>-<time>`. */
    jobId?: string;
  }
  export type Result = AnalysisReport & { jobId: string };
  export const type = new RequestType<Params, Result, void>(method);
}

/** Progress of an analysis (server -> client), forwarded to the analysis panel. */
export namespace AblateProgressNotification {
  export const method = 'loraxs/ablateProgress';
  /** A JobEvent of the analysis (phase, log, row, run, eval) with its id. */
  export type Params = JobEvent & { jobId: string };
  export const type = new NotificationType<Params>(method);
}

/** Cancel the running analysis (client -> server); `cancelled` is false when none was running. */
export namespace CancelAblationRequest {
  export const method = 'loraxs/cancelAblation';
  export interface Params {
    jobId?: string;
  }
  export const type = new RequestType<Params, { cancelled: boolean }, void>(method);
}

/** The reports saved under the config's `<output>/analysis/`, for the panel to show without rerunning. */
export namespace ReadAnalysisRequest {
  export const method = 'loraxs/readAnalysis';
  export interface Params {
    uri: string;
  }
  export interface Result {
    /** `<output>/analysis` */
    dir: string;
    retention: AblationReport | null;
    delta: AblationReport | null;
    init: InitReport | null;
    spectra: SpectraReport | null;
  }
  export const type = new RequestType<Params, Result, void>(method);
}

/** Messages from the extension to the analysis panel (webview). */
export type AnalysisPanelMessage =
  | { type: 'config'; uri: string; title: string }
  | { type: 'reports'; reports: ReadAnalysisRequest.Result }
  | { type: 'started'; jobId: string; kind: AnalysisKind }
  | { type: 'progress'; progress: AblateProgressNotification.Params }
  | { type: 'finished'; report: AnalysisReport }
  | { type: 'failed'; message: string };

/** Messages from the analysis panel (webview) to the extension. */
export type AnalysisPanelRequest =
  | { type: 'ready' }
  | { type: 'run'; request: AnalysisRequest }
  | { type: 'cancel' }
  /** Save a file the panel produced (PNG as a data URL, or CSV text) through a save dialog. */
  | { type: 'export'; format: 'png' | 'csv'; suggestedName: string; data: string };
