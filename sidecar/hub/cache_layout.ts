/**
 * The Hugging Face cache layout, exactly as Python's huggingface_hub writes and reads it, so that a model
 * downloaded by transformers is not downloaded again by us, and the reverse:
 *
 * ```
 * <HF_HUB_CACHE>/models--<org>--<name>/
 *   blobs/<etag>                          file contents, named by sha256 (LFS files) or git blob sha1
 *   blobs/<etag>.incomplete               a download in progress (ours resume from it)
 *   refs/<revision>                       the commit hash a branch or tag pointed to (no newline)
 *   snapshots/<commit>/<path>             relative symlinks: ../../blobs/<etag>, one more ../ per subfolder
 *   .no_exist/<commit>/<path>             empty markers: this optional file does not exist at that commit
 * <HF_HUB_CACHE>/.locks/models--<org>--<name>/   lock files (ours: <etag>.loraxs-lock, see blob_lock.ts)
 * <HF_HUB_CACHE>/CACHEDIR.TAG                     tells backup tools to skip the cache (huggingface_hub's text)
 * ```
 *
 * Where symlinks cannot be made (Windows without developer mode) the snapshot gets a copy of the blob,
 * as huggingface_hub does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';

/** A full 40-hex commit id (huggingface_hub's REGEX_COMMIT_HASH). */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

export function isCommitHash(s: string): boolean {
  return COMMIT_HASH.test(s);
}

/** `models--org--name`. */
export function repoFolderName(id: string): string {
  return ['models', ...id.split('/')].join('--');
}

/** Rejects file names from the hub (index shards, our lists) that would escape the snapshot folder. */
export function checkRelativeFilename(file: string): void {
  const parts = file.split('/');
  if (file === '' || path.isAbsolute(file) || file.includes('\\') || parts.some((p) => p === '..' || p === '' || p === '.')) {
    throw new LoraxsError(`invalid file name from the hub: '${file}' (must be a relative path inside the repository)`);
  }
}

function existsNoFollow(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Writes `text` to `file` atomically (tmp + rename), creating the folder. */
function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

const CACHEDIR_TAG = 'Signature: 8a477f597d28d172789f06886806bc55\n'
  + '# This file is a cache directory tag created by huggingface_hub.\n'
  + '# For information about cache directory tags, see:\n'
  + '#\thttps://bford.info/cachedir/\n';

/** Writes `<hubCache>/CACHEDIR.TAG` if it is missing, as huggingface_hub does before a download (best effort). */
export function ensureCacheDirTag(hubCache: string): void {
  const tag = path.join(hubCache, 'CACHEDIR.TAG');
  try {
    if (!fs.existsSync(tag)) writeAtomic(tag, CACHEDIR_TAG);
  } catch { /* a read-only cache still works */ }
}

/**
 * The hub id and commit of a snapshot folder (`.../models--org--name/snapshots/<commit>`), or undefined for
 * any other folder. Ids never contain `--`, so the folder name splits back into one id.
 */
export function snapshotOf(dir: string): { id: string; commit: string } | undefined {
  const abs = path.resolve(dir);
  const commit = path.basename(abs);
  const snapshots = path.dirname(abs);
  const m = /^models--([^/\\]+?)--([^/\\]+)$/.exec(path.basename(path.dirname(snapshots)));
  if (!isCommitHash(commit) || path.basename(snapshots) !== 'snapshots' || !m || m[1].includes('--') || m[2].includes('--')) return undefined;
  return { id: `${m[1]}/${m[2]}`, commit };
}

/** One repository's folder in the hub cache. */
export class RepoCache {
  readonly dir: string;

  constructor(readonly hubCache: string, readonly id: string) {
    this.dir = path.join(hubCache, repoFolderName(id));
  }

  blobPath(etag: string): string {
    return path.join(this.dir, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return path.join(this.dir, 'snapshots', commit);
  }

  /** `snapshots/<commit>/<file>` (file uses `/`). */
  pointerPath(commit: string, file: string): string {
    checkRelativeFilename(file);
    return path.join(this.snapshotDir(commit), ...file.split('/'));
  }

  noExistPath(commit: string, file: string): string {
    checkRelativeFilename(file);
    return path.join(this.dir, '.no_exist', commit, ...file.split('/'));
  }

  lockPath(etag: string): string {
    return path.join(this.hubCache, '.locks', repoFolderName(this.id), `${etag}.loraxs-lock`);
  }

  /** The commit `revision` resolves to in the cache: itself for a commit hash, else `refs/<revision>`. */
  commitFor(revision: string): string | undefined {
    if (isCommitHash(revision)) return revision;
    try {
      const commit = fs.readFileSync(path.join(this.dir, 'refs', ...revision.split('/')), 'utf8').trim();
      return isCommitHash(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records `refs/<revision>` = commit (nothing for a commit hash; rewritten only when it changed). */
  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    const file = path.join(this.dir, 'refs', ...revision.split('/'));
    try {
      if (fs.readFileSync(file, 'utf8') === commit) return;
    } catch { /* not there yet */ }
    writeAtomic(file, commit);
  }

  /** True when `snapshots/<commit>/<file>` exists and its blob is there (a dangling link does not count). */
  hasFile(commit: string, file: string): boolean {
    return fs.existsSync(this.pointerPath(commit, file));
  }

  /** True when a `.no_exist` marker says the file does not exist at that commit. */
  isMarkedMissing(commit: string, file: string): boolean {
    return fs.existsSync(this.noExistPath(commit, file));
  }

  markMissing(commit: string, file: string): void {
    const p = this.noExistPath(commit, file);
    if (existsNoFollow(p)) return;
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.closeSync(fs.openSync(p, 'a'));
  }

  /**
   * Makes `snapshots/<commit>/<file>` a relative symlink to `blobs/<etag>` (Python's `os.path.relpath` of
   * the absolute paths), replacing whatever was there; copies the blob where symlinks are refused.
   */
  linkPointer(commit: string, file: string, etag: string): string {
    const pointer = this.pointerPath(commit, file);
    const blob = this.blobPath(etag);
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    try { fs.rmSync(pointer, { force: true }); } catch { /* nothing to replace */ }
    const target = path.relative(path.dirname(path.resolve(pointer)), path.resolve(blob));
    try {
      fs.symlinkSync(target, pointer);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.realpathSync(pointer) === fs.realpathSync(blob)) return pointer;
      if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP' && code !== 'EINVAL') throw e;
      fs.copyFileSync(blob, pointer);
    }
    return pointer;
  }
}
