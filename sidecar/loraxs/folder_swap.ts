/**
 * Writing a whole output folder (a merged model, an export) atomically: everything goes into
 * `<dir>.tmp-<pid>`, and only when it is complete does it replace `dir` (the old folder is moved aside,
 * the new one renamed in, the old one removed). An error leaves `dir` as it was and no partial folder.
 */
import * as fs from 'node:fs';

export function writeFolderAtomically(dir: string, build: (tmpDir: string) => void): void {
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    build(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const old = `${dir}.old-${process.pid}`;
  const existed = fs.existsSync(dir);
  if (existed) fs.renameSync(dir, old);
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    if (existed) fs.renameSync(old, dir);
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (existed) fs.rmSync(old, { recursive: true, force: true });
}
