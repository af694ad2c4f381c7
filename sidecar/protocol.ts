/**
 * Every custom request and notification between the extension and the sidecar, and every message between
 * the extension and its webviews. Both ends import these objects; no method string is typed elsewhere.
 * Imports only vscode-languageserver-protocol types, so neither side pulls in the other's runtime.
 */
import { NotificationType, RequestType } from 'vscode-languageserver-protocol';
import type { EvalRecord, StepRecord } from './engine/events';

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
  }
  export interface Result {
    runId: string;
    output: string;
    adapterDir: string;
    steps: number;
    cancelled: boolean;
    best: EvalRecord | null;
  }
  export const type = new RequestType<Params, Result, void>(method);
}

/** Cancel the running training; it saves a checkpoint first (client -> server). */
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
