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

/**
 * Ctrl-C asks the engine to stop at its next safe point (`what` says what happens then); a second
 * Ctrl-C exits at once.
 */
export function interruptSignal(what: string): AbortSignal {
  const controller = new AbortController();
  process.on('SIGINT', () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`\ncancelling: ${what} (Ctrl-C again to quit at once)\n`);
    controller.abort();
  });
  return controller.signal;
}
