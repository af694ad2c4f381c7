/**
 * Filesystem failures are the user's to fix (a read-only disk, a full disk, a file where a folder should
 * be), not bugs: an errno error (EACCES, EROFS, ENOSPC, ...) becomes one line that names the path and the
 * remedy, with an exit status of its own (the README's exit-code table), and no stack trace.
 *
 *   73  the output cannot be created where it was asked for (refused, permission, read-only, a file in
 *       the way): choose another place;
 *   74  an I/O error while reading or writing (disk full, a busy or vanished file): fix the disk and retry.
 */
import { LoraxsError } from '../errors';

/** Exit statuses of the CLI (sysexits.h where one fits). */
export const EXIT = {
  ok: 0,
  /** Bad input: a config key, a data row, a model or adapter file. */
  input: 1,
  /** Bad command line. */
  usage: 2,
  /** A bug (the stack is printed). */
  internal: 70,
  /** The output cannot be created there (EX_CANTCREAT). */
  cantCreate: 73,
  /** An I/O error while reading or writing (EX_IOERR). */
  io: 74,
} as const;

interface ErrnoAdvice {
  /** What happened, after the path. */
  what: string;
  /** What to do. */
  remedy: string;
  exitCode: number;
}

const ADVICE: Record<string, ErrnoAdvice> = {
  EACCES: { what: 'permission denied', remedy: 'choose a location you can write to, or change its permissions', exitCode: EXIT.cantCreate },
  EPERM: { what: 'operation not permitted', remedy: 'choose a location you can write to, or change its permissions (on Windows: close programs holding a file in it)', exitCode: EXIT.cantCreate },
  EROFS: { what: 'the file system is read-only', remedy: 'choose a location on a writable disk', exitCode: EXIT.cantCreate },
  EEXIST: { what: 'already exists', remedy: 'remove or rename it, or choose another name', exitCode: EXIT.cantCreate },
  ENOTDIR: { what: 'a part of this path is a file, not a folder', remedy: 'fix the path or move the file out of the way', exitCode: EXIT.cantCreate },
  EISDIR: { what: 'is a folder where a file was expected', remedy: 'name a file, not a folder', exitCode: EXIT.cantCreate },
  ENAMETOOLONG: { what: 'the path is too long', remedy: 'choose a shorter path', exitCode: EXIT.cantCreate },
  ELOOP: { what: 'too many levels of symbolic links', remedy: 'fix the symbolic links on this path', exitCode: EXIT.cantCreate },
  ENOSPC: { what: 'no space left on the device', remedy: 'free some space or choose a location on another disk', exitCode: EXIT.io },
  EDQUOT: { what: 'disk quota exceeded', remedy: 'free some space or choose a location on another disk', exitCode: EXIT.io },
  EBUSY: { what: 'is busy (in use by another program, or a mount point)', remedy: 'close what holds it and retry, or choose another location', exitCode: EXIT.io },
  ENOENT: { what: 'no such file or folder', remedy: 'check the path (was it moved or deleted while the job ran?)', exitCode: EXIT.io },
  EIO: { what: 'input/output error', remedy: 'check the disk (dmesg, fsck) and retry', exitCode: EXIT.io },
  EMFILE: { what: 'too many open files', remedy: 'raise the open-file limit (ulimit -n) and retry', exitCode: EXIT.io },
  ENFILE: { what: 'too many open files in the system', remedy: 'close other programs and retry', exitCode: EXIT.io },
};

/** A filesystem failure the user can fix: `path: what (CODE); remedy`. */
export class FsUserError extends LoraxsError {
  constructor(message: string, readonly path: string, readonly errno: string, readonly exitCode: number) {
    super(message, { file: path });
  }
}

export function isErrnoError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && /^E[A-Z]+$/.test((e as NodeJS.ErrnoException).code!);
}

/** Whether `code` is an errno this module turns into a user error. */
export function isUserErrno(code: string | undefined): boolean {
  return code !== undefined && Object.prototype.hasOwnProperty.call(ADVICE, code);
}

/** The FsUserError for `code` at `path`; `at`: the path that failed, when another (a parent folder). */
export function fsErrorFor(code: string, path: string, at?: string): FsUserError {
  const a = ADVICE[code];
  return new FsUserError(`${a.what}${at && at !== path ? ` at ${at}` : ''} (${code}); ${a.remedy}`, path, code, a.exitCode);
}

/**
 * `e` as a user error when it is an errno error this module knows; anything else unchanged. `where` names
 * the path the user gave (the output folder) when the failing path is a temporary one or absent (a write
 * to an open file descriptor carries no path).
 */
export function toFsUserError(e: unknown, where?: string): unknown {
  if (e instanceof LoraxsError || !isErrnoError(e) || !isUserErrno(e.code)) return e;
  // A full or read-only disk is about where the job writes; copyFile reports its source as `path`.
  const writeSide = e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === 'EROFS';
  const dest = (e as { dest?: string }).dest;
  const p = writeSide ? (where ?? dest ?? e.path) : (e.path ?? where);
  if (p === undefined) return e;
  return fsErrorFor(e.code, userPath(p));
}

/** A temporary path (`x.tmp-123/...`, `x.old-123`) shown as the path the user knows (`x`). */
function userPath(p: string): string {
  return p.replace(/\.(tmp|old)-\d+(?=$|[\\/]).*$/, '');
}

/** The CLI exit status for an error that reached the top: its own for user errors, 1 for other bad input, 70 for bugs. */
export function exitCodeOf(e: unknown): number {
  if (!(e instanceof LoraxsError)) return EXIT.internal;
  const code = (e as { exitCode?: unknown }).exitCode;
  return typeof code === 'number' ? code : EXIT.input;
}
