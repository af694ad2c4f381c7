/**
 * Turning failures into JSON-RPC errors: a LoraxsError (bad input) becomes a RequestFailed error with its
 * `file:line:col: message` text; anything else is a bug, logged with its stack and reported as internal.
 */
import { LSPErrorCodes, ResponseError } from 'vscode-languageserver/node';
import { LoraxsError } from '../errors';
import type { SourcePlace } from '../errors';

export interface Logger {
  error(message: string): void;
  log(message: string): void;
}

/** A ResponseError for `e`; logs a stack for errors that are not LoraxsErrors. */
export function toResponseError(e: unknown, logger: Logger): ResponseError<void> {
  if (e instanceof ResponseError) return e as ResponseError<void>;
  if (e instanceof LoraxsError) return new ResponseError(LSPErrorCodes.RequestFailed, e.format());
  const err = e instanceof Error ? e : new Error(String(e));
  logger.error(`internal error: ${err.stack ?? err.message}`);
  return new ResponseError(LSPErrorCodes.RequestFailed, `internal error in the LoRA-XS sidecar: ${err.message}`);
}

/** Error data sent from the job worker: enough to rebuild a LoraxsError or an internal error. */
export interface SerializedError {
  loraxs: boolean;
  message: string;
  place?: SourcePlace;
  formatted: string;
  stack?: string;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof LoraxsError) return { loraxs: true, message: e.message, place: e.place, formatted: e.format() };
  const err = e instanceof Error ? e : new Error(String(e));
  return { loraxs: false, message: err.message, formatted: err.message, stack: err.stack };
}

/** The error `serializeError` describes, rebuilt on this side of the thread boundary. */
export function deserializeError(s: SerializedError): Error {
  if (s.loraxs) return new LoraxsError(s.message, s.place);
  const err = new Error(s.message);
  if (s.stack) err.stack = s.stack;
  return err;
}
