/**
 * Fault injection for tests (like training_checkpoint.ts's checkpoint faults): `LORAXS_FAULT=stall-update@N`
 * blocks the training thread in the first micro-batch of update N for up to ten minutes, as one kernel that
 * never returns would (a pathological step): the thread's event loop does not run, and nothing but another
 * thread can answer a signal. It announces itself on stderr first, so a test knows when the stall began.
 */

const STALL_MS = 10 * 60 * 1000;

/** Blocks the calling thread if `LORAXS_FAULT` names `stall-update@<update>`. */
export function stallIfFaultDue(update: number): void {
  const m = /^stall-update@(\d+)$/.exec(process.env.LORAXS_FAULT ?? '');
  if (!m || Number(m[1]) !== update) return;
  process.stderr.write(`LORAXS_FAULT=${process.env.LORAXS_FAULT}: stalling update ${update}\n`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, STALL_MS);
}
