/**
 * Learning-rate schedules as transformers defines them (LambdaLR multipliers of the base rate):
 * - linear: get_linear_schedule_with_warmup (warmup, then linear decay to 0 at the last step);
 * - cosine: get_cosine_schedule_with_warmup with num_cycles 0.5 (warmup, then half a cosine to 0);
 * - constant: get_constant_schedule_with_warmup (warmup, then 1).
 * Warmup is ceil(warmup_ratio × total steps), as TrainingArguments.get_warmup_steps computes it.
 */
import { assert } from '../errors';

export type ScheduleKind = 'linear' | 'cosine' | 'constant';

export interface Schedule {
  kind: ScheduleKind;
  /** Optimizer updates over the whole run. */
  totalSteps: number;
  warmupSteps: number;
}

/** ceil(total × ratio), the float product transformers takes (so 100 × 0.07 gives 8, as in Python). */
export function warmupStepsFor(warmupRatio: number, totalSteps: number): number {
  assert(warmupRatio >= 0 && warmupRatio <= 1, () => `warmup ratio must be in [0, 1], got ${warmupRatio}`);
  return Math.ceil(totalSteps * warmupRatio);
}

export function makeSchedule(kind: ScheduleKind, totalSteps: number, warmupRatio: number): Schedule {
  assert(Number.isInteger(totalSteps) && totalSteps >= 1, () => `total steps must be a positive integer, got ${totalSteps}`);
  return { kind, totalSteps, warmupSteps: warmupStepsFor(warmupRatio, totalSteps) };
}

/**
 * The multiplier of the base learning rate for the update that follows `step0` updates already done
 * (LambdaLR's lr_lambda(step0): the first update uses step0 = 0).
 */
export function lrAt(step0: number, s: Schedule): number {
  const { kind, totalSteps, warmupSteps } = s;
  if (step0 < warmupSteps) return step0 / Math.max(1, warmupSteps);
  if (kind === 'constant') return 1;
  const progress = (step0 - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  if (kind === 'linear') return Math.max(0, (totalSteps - step0) / Math.max(1, totalSteps - warmupSteps));
  const numCycles = 0.5;
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * numCycles * 2 * progress)));
}
