/**
 * Reading parsed CLI option values (node:util parseArgs output) with errors that name the option, and the
 * Ctrl-C handling every long command shares. Used by the command table and by commands defined elsewhere.
 */
import { LoraxsError } from '../errors';

export type OptionValues = Record<string, string | boolean | undefined>;

export interface OptionSpec {
  type: 'string' | 'boolean';
  help: string;
  valueName?: string;
}

export interface CommandSpec {
  summary: string;
  usage: string;
  positionals: number;
  options: Record<string, OptionSpec>;
  run(positionals: string[], values: OptionValues): Promise<number | void>;
}


export function str(v: OptionValues, key: string): string | undefined {
  const x = v[key];
  return typeof x === 'string' ? x : undefined;
}

export function required(v: OptionValues, key: string): string {
  const x = str(v, key);
  if (!x) throw new LoraxsError(`--${key} is required`);
  return x;
}

export function positiveInt(v: OptionValues, key: string): number | undefined {
  const x = str(v, key);
  if (x === undefined) return undefined;
  const n = Number(x);
  if (!Number.isInteger(n) || n < 1) throw new LoraxsError(`--${key} must be a positive integer, got '${x}'`);
  return n;
}

/** `a,b,c` -> ['a', 'b', 'c'] (blank items dropped). */
export function list(v: OptionValues, key: string): string[] | undefined {
  return str(v, key)?.split(',').map((s) => s.trim()).filter(Boolean);
}

export function numbers(v: OptionValues, key: string, integer: boolean): number[] | undefined {
  return list(v, key)?.map((s) => {
    const n = Number(s);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new LoraxsError(`--${key} takes ${integer ? 'integers' : 'numbers'} separated by commas, got '${s}'`);
    return n;
  });
}

export function oneOf<T extends string>(values: string[] | undefined, allowed: readonly T[], key: string): T[] | undefined {
  for (const x of values ?? []) if (!(allowed as readonly string[]).includes(x)) throw new LoraxsError(`--${key} takes ${allowed.join(', ')}; got '${x}'`);
  return values as T[] | undefined;
}

/** Why an interruptSignal was aborted: the signal and the exit status it calls for (128 + its number). */
export interface InterruptReason {
  signal: 'SIGINT' | 'SIGTERM';
  exitCode: 130 | 143;
}

/**
 * Ctrl-C (SIGINT) or SIGTERM asks the engine to stop at its next safe point (`what` says what happens
 * then); the signal's `reason` is an InterruptReason (see interruptExitCode). A second signal of either
 * kind exits at once, 130 after Ctrl-C, 143 after SIGTERM. The handlers run on this thread's event loop:
 * `train` computes in a worker thread (job_in_thread.ts), so they run at once; a job run in this thread
 * must yield to the event loop for them to run. Windows delivers no SIGTERM.
 */
export function interruptSignal(what: string): AbortSignal {
  const controller = new AbortController();
  const on = (signal: InterruptReason['signal'], exitCode: InterruptReason['exitCode']) => () => {
    if (controller.signal.aborted) {
      process.stderr.write(`\n${signal} again: quitting at once\n`);
      process.exit(exitCode);
    }
    process.stderr.write(`\ncancelling (${signal}): ${what} (${signal === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM'} again to quit at once)\n`);
    controller.abort({ signal, exitCode } satisfies InterruptReason);
  };
  process.on('SIGINT', on('SIGINT', 130));
  process.on('SIGTERM', on('SIGTERM', 143));
  return controller.signal;
}

/** The exit status for a job stopped through `signal` (from interruptSignal): 143 after SIGTERM, else 130. */
export function interruptExitCode(signal: AbortSignal): number {
  return (signal.reason as Partial<InterruptReason> | undefined)?.exitCode ?? 130;
}
