/**
 * Errors across a thread boundary (engine/job_thread.ts): a LoraxsError keeps its kind (a refused output, a
 * filesystem error with its exit status, a config error with its place), anything else its message and
 * stack. OutputErrorData (protocol.ts) is also what the language server sends its client.
 */
import { LoraxsError } from '../errors';
import type { SourcePlace } from '../errors';
import { FsUserError, toFsUserError } from '../io/fs_errors';
import { OutputRefusedError } from '../io/output_folder';
import type { OutputErrorData } from '../protocol';

/** The OutputErrorData of a refused output or a filesystem error; undefined for other errors. */
export function errorData(e: LoraxsError): OutputErrorData | undefined {
  if (e instanceof OutputRefusedError) {
    return e.refusal === 'exists'
      ? { kind: 'output-exists', output: e.output, writer: e.writer, resumable: e.resumable, exitCode: e.exitCode }
      : { kind: 'output-refused', output: e.output, why: e.refusal, exitCode: e.exitCode };
  }
  if (e instanceof FsUserError) return { kind: 'filesystem', path: e.path, errno: e.errno, exitCode: e.exitCode };
  return undefined;
}

/** Error data sent from the job worker: enough to rebuild a LoraxsError (with its kind) or an internal error. */
export interface SerializedError {
  loraxs: boolean;
  message: string;
  place?: SourcePlace;
  formatted: string;
  stack?: string;
  /** A refused output or a filesystem error. */
  data?: OutputErrorData;
}

export function serializeError(e: unknown): SerializedError {
  const user = toFsUserError(e);
  if (user instanceof LoraxsError) return { loraxs: true, message: user.message, place: user.place, formatted: user.format(), data: errorData(user) };
  const err = user instanceof Error ? user : new Error(String(user));
  return { loraxs: false, message: err.message, formatted: err.message, stack: err.stack };
}

/** The error `serializeError` describes, rebuilt on this side of the thread boundary. */
export function deserializeError(s: SerializedError): Error {
  if (s.loraxs) {
    const d = s.data;
    if (d?.kind === 'output-exists') return new OutputRefusedError(s.message, d.output, 'exists', d.writer, d.resumable);
    if (d?.kind === 'output-refused') return new OutputRefusedError(s.message, d.output, d.why);
    if (d?.kind === 'filesystem') return new FsUserError(s.message, d.path, d.errno, d.exitCode);
    return new LoraxsError(s.message, s.place);
  }
  const err = new Error(s.message);
  if (s.stack) err.stack = s.stack;
  return err;
}
