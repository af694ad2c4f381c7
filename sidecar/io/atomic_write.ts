/**
 * Atomic file writes: the data goes to `<file>.tmp-<pid>`, is flushed to disk, then renamed over `file`,
 * so a reader (or a crash) never sees a half-written file. The temporary file is removed on every failure
 * (ENOSPC included), and a filesystem error comes out as an FsUserError naming `file` (a failed write to
 * a file descriptor carries no path of its own).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toFsUserError } from './fs_errors';

/** Writes `data` to `file` atomically (tmp + fsync + rename). Creates no folders: the parent must exist. */
export function writeFileAtomic(file: string, data: Buffer | string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    let written = 0;
    while (written < bytes.length) {
      // Chunked: one writeSync call is limited to 2 GiB.
      const chunk = Math.min(bytes.length - written, 1 << 30);
      written += fs.writeSync(fd, bytes, written, chunk, written);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) {
      try { fs.closeSync(fd); } catch { /* already failing; the first error is the one to report */ }
    }
    try { fs.unlinkSync(tmp); } catch { /* it may not exist */ }
    throw toFsUserError(e, file);
  }
  syncDirectory(path.dirname(file));
}

/** Writes `value` as pretty-printed JSON (2 spaces, trailing newline), atomically. */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

/** Flushes the rename itself to disk where the platform allows it (Linux/macOS; not Windows). */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* directories cannot be opened or fsynced on some platforms; the rename is still atomic */
  } finally {
    if (fd !== undefined) try { fs.closeSync(fd); } catch { /* ignore */ }
  }
}
