/**
 * Turning failures into JSON-RPC errors: a LoraxsError (bad input) becomes a RequestFailed error with its
 * `file:line:col: message` text; a refused output location or a filesystem error (EACCES, ENOSPC, ...)
 * also carries OutputErrorData (protocol.ts), so the client can tell "the output exists" from the rest;
 * anything else is a bug, logged with its stack and reported as internal.
 */
import { LSPErrorCodes, ResponseError } from 'vscode-languageserver/node';
import { LoraxsError } from '../errors';
import { toFsUserError } from '../io/fs_errors';
import { errorData } from '../engine/job_errors';
import type { OutputErrorData } from '../protocol';

export interface Logger {
  error(message: string): void;
  log(message: string): void;
}

/** A ResponseError for `e`; logs a stack for errors that are not LoraxsErrors. */
export function toResponseError(e: unknown, logger: Logger): ResponseError<OutputErrorData | undefined> {
  if (e instanceof ResponseError) return e as ResponseError<OutputErrorData | undefined>;
  const user = toFsUserError(e);
  if (user instanceof LoraxsError) return new ResponseError(LSPErrorCodes.RequestFailed, user.format(), errorData(user));
  const err = user instanceof Error ? user : new Error(String(user));
  logger.error(`internal error: ${err.stack ?? err.message}`);
  return new ResponseError(LSPErrorCodes.RequestFailed, `internal error in the LoRA-XS sidecar: ${err.message}`);
}
