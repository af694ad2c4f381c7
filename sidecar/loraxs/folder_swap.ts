/**
 * Writing a whole output folder (a merged model, an export) atomically: everything goes into
 * `<dir>.tmp-<pid>`, the marker `.loraxs-output` last (when a writer is named), and only when it is complete does it replace `dir`
 * (the old folder is moved aside, the new one renamed in, the old one removed). An error, ENOSPC included,
 * leaves `dir` as it was, no temporary folder and no parent folders this call created; a filesystem error
 * comes out as an FsUserError naming `dir`.
 *
 * With `onlyReplaceMarked` an existing folder is replaced only when LoRA-XS wrote it (its marker, or the
 * files of a run from before the marker), checked again just before the swap: a non-empty folder of the
 * user's, or a file, is never moved away.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toFsUserError } from '../io/fs_errors';
import { OutputRefusedError, folderState, writeOutputMarker, OUTPUT_MARKER } from '../io/output_folder';

export interface FolderWriteOptions {
  /** What writes the folder (merge, export, import), recorded in its marker `.loraxs-output`; none: no marker. */
  writer?: string;
  /** Refuse to replace an existing folder LoRA-XS did not write (merge and export set it). */
  onlyReplaceMarked?: boolean;
}

export function writeFolderAtomically(dir: string, build: (tmpDir: string) => void, opts: FolderWriteOptions = {}): void {
  dir = path.resolve(dir);
  const tmp = `${dir}.tmp-${process.pid}`;
  removeStaleTemporaries(dir);
  let createdParent: string | undefined;
  try {
    createdParent = fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    build(tmp);
    // The marker goes in last: a folder with it is complete.
    if (opts.writer) writeOutputMarker(tmp, opts.writer);
    if (opts.onlyReplaceMarked) checkReplaceable(dir);
    swapIn(tmp, dir);
  } catch (e) {
    removeQuietly(tmp);
    if (createdParent) removeEmptyFolders(path.dirname(dir), createdParent);
    throw toFsUserError(e, dir);
  }
}

/** Refuses to move away anything but nothing, an empty folder or LoRA-XS output. */
function checkReplaceable(dir: string): void {
  const state = folderState(dir);
  if (state.kind === 'not-a-folder') throw new OutputRefusedError('is a file, not a folder; remove or rename it, or choose another --out folder', dir, 'not-a-folder');
  if (state.kind === 'foreign') {
    throw new OutputRefusedError(`is not empty and was not written by LoRA-XS (no ${OUTPUT_MARKER}); choose a new or empty folder`, dir, 'foreign');
  }
}

/** Renames `tmp` to `dir`, moving an existing `dir` aside first and removing it after. */
function swapIn(tmp: string, dir: string): void {
  const old = `${dir}.old-${process.pid}`;
  const existed = fs.existsSync(dir);
  if (existed) {
    removeQuietly(old);
    fs.renameSync(dir, old);
  }
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    if (existed) fs.renameSync(old, dir);
    throw e;
  }
  // The new folder is in place; a failure to remove the old one (a busy file on Windows) loses nothing.
  if (existed) removeQuietly(old);
}

function removeQuietly(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true });
  } catch {
    /* already failing, or only a leftover: the first error is the one to report */
  }
}

/** Removes the empty folders from `deepest` up to `top` (what mkdirSync -p created). */
function removeEmptyFolders(deepest: string, top: string): void {
  for (let p = deepest; ; p = path.dirname(p)) {
    try {
      fs.rmdirSync(p);
    } catch {
      return;
    }
    if (p === path.resolve(top) || path.dirname(p) === p) return;
  }
}

/** `<dir>.tmp-<pid>` / `<dir>.old-<pid>` left by a process that was killed (its pid no longer runs). */
function removeStaleTemporaries(dir: string): void {
  const parent = path.dirname(dir);
  const base = path.basename(dir);
  let entries: string[];
  try {
    entries = fs.readdirSync(parent);
  } catch {
    return;
  }
  for (const name of entries) {
    const m = name.startsWith(base) ? /^\.(tmp|old)-(\d+)$/.exec(name.slice(base.length)) : null;
    if (!m || Number(m[2]) === process.pid || isRunning(Number(m[2]))) continue;
    const p = path.join(parent, name);
    if (m[1] === 'tmp') {
      removeQuietly(p);
      continue;
    }
    // An `.old-` folder is the previous output of an interrupted swap: put back when nothing replaced it,
    // removed when the swap completed (only if it is LoRA-XS output: nothing else is ever moved aside).
    if (!fs.existsSync(dir)) {
      try {
        fs.renameSync(p, dir);
      } catch {
        /* leave it */
      }
    } else {
      try {
        if (folderState(p).kind === 'marked') removeQuietly(p);
      } catch {
        /* unreadable: leave it */
      }
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
