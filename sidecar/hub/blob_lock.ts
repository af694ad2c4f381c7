/**
 * One download per blob at a time: within this process (a map of running downloads) and across processes
 * (a lock file created exclusively under `<HF_HUB_CACHE>/.locks/models--org--name/<etag>.loraxs-lock`,
 * holding the owner's pid; a lock whose process is gone is taken over). Python's huggingface_hub uses its
 * own `<etag>.lock` files and a per-process temporary file, so the two never write the same file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortedError } from './http_request';

const running = new Map<string, Promise<void>>();

function ownerAlive(lockPath: string): boolean {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(lockPath, 'utf8').trim());
  } catch {
    return true; // it vanished or is being written: look again
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return false; // in this process only `running` guards a blob, so this one is stale
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = (): void => { clearTimeout(t); reject(new AbortedError()); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function acquire(lockPath: string, signal?: AbortSignal): Promise<void> {
  fs.mkdirSync(path.dirname(lockPath), { recursive: true });
  for (;;) {
    try {
      const fd = fs.openSync(lockPath, 'wx');
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (!ownerAlive(lockPath)) {
      try { fs.unlinkSync(lockPath); } catch { /* another waiter took it over first */ }
      continue;
    }
    await sleep(500, signal);
  }
}

/** Runs `fn` holding the lock for `lockPath`; callers in this process for the same blob run one after another. */
export async function withBlobLock(lockPath: string, signal: AbortSignal | undefined, fn: () => Promise<void>): Promise<void> {
  while (running.has(lockPath)) {
    try { await running.get(lockPath); } catch { /* the other caller reports its own failure */ }
  }
  const job = (async () => {
    await acquire(lockPath, signal);
    try {
      await fn();
    } finally {
      try { fs.unlinkSync(lockPath); } catch { /* already gone */ }
    }
  })();
  running.set(lockPath, job);
  try {
    await job;
  } finally {
    running.delete(lockPath);
  }
}
