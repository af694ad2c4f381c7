/**
 * Every custom request and notification between the extension and the sidecar, and every message between
 * the extension and its webviews. Both ends import these objects; no method string is typed elsewhere.
 * Imports only vscode-languageserver-protocol types, so neither side pulls in the other's runtime.
 */
import { NotificationType, RequestType } from 'vscode-languageserver-protocol';
import type { EvalRecord, StepRecord } from './engine/events';
import type { ExportFormat } from './engine/export_run';
import type { ParamsReport } from './params';

/** Sidecar health, shown in the status bar (server -> client). */
export namespace StatusNotification {
  export const method = 'loraxs/status';
  export interface Params {
    state: 'starting' | 'idle' | 'busy' | 'error';
    backend?: string;
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
    /** The id progress notifications carry; default: `<config name>-<time>`. */
    runId?: string;
  }
  export interface Result {
    runId: string;
    output: string;
    adapterDir: string;
    steps: number;
    cancelled: boolean;
    best: EvalRecord | null;
    /** Updates the full run would make. */
    totalSteps: number;
    /** LoRA-XS parameters (Σ r²) plus the task head's. */
    trainableParams: number;
    adapterParams: number;
    /** Size of adapter.safetensors (0 when none was written). */
    adapterBytes: number;
    seconds: number;
  }
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
  export type Params =
    | { runId: string; kind: 'step'; record: StepRecord }
    | { runId: string; kind: 'eval'; record: EvalRecord; best: boolean }
    | { runId: string; kind: 'log'; message: string }
    | { runId: string; kind: 'phase'; phase: string; done: number; total: number };
  export const type = new NotificationType<Params>(method);
}

/** Messages from the extension to the training panel (webview). */
export type TrainingPanelMessage =
  | { type: 'reset'; runId: string; title: string }
  | { type: 'step'; runId: string; record: StepRecord }
  | { type: 'eval'; runId: string; record: EvalRecord; best: boolean }
  | { type: 'done'; runId: string; summary: Record<string, string | number> };

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

/** One line of `<output>/metrics.jsonl`: an update, or an evaluation (`baseline` at step 0, before training). */
export type MetricsRecord = StepRecord | (EvalRecord & { baseline?: boolean });

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
    jobId?: string;
  }
  export interface Result {
    outDir: string;
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
    jobId?: string;
  }
  export interface Result {
    outDir: string;
  }
  export const type = new RequestType<Params, Result, void>(method);
}
