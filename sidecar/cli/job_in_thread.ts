/**
 * `loraxs train` runs its job in a worker thread (engine/job_thread.ts), as the sidecar does, so this
 * thread stays free for signals: Ctrl-C or SIGTERM is answered at once even while one long kernel runs
 * (the run then stops before its next micro-batch, with a checkpoint of the last complete update), and a
 * second signal quits at once. In-process, a signal waited for the kernel to return, however long it took.
 */
import { startJob, type JobSpec } from '../engine/job_thread';
import type { JobEvent, JobResult } from '../records';

/**
 * Runs `job` in a worker started from the CLI bundle (dist/cli.js: this module is bundled into it, and
 * cli/main.ts runs the job when started as a worker); `stop` aborting asks the job to stop at its next
 * safe point. The worker's own stdout/stderr lines go to stderr.
 */
export async function runJobInThread(job: JobSpec, onEvent: (e: JobEvent) => void, stop: AbortSignal): Promise<JobResult> {
  const running = startJob(job, __filename, onEvent, (line) => process.stderr.write(`${line}\n`));
  const cancel = (): void => running.cancel();
  if (stop.aborted) cancel();
  else stop.addEventListener('abort', cancel, { once: true });
  try {
    return await running.done;
  } finally {
    stop.removeEventListener('abort', cancel);
  }
}
