/**
 * User-facing errors. A LoraxsError is an expected failure caused by input (a file, a config key, a
 * data row): the CLI prints `file:line:col: message` without a stack trace and exits non-zero, and the
 * language server turns it into a diagnostic. Anything else is a bug and keeps its stack.
 */
export interface SourcePlace {
  file: string;
  /** 1-based line, when known. */
  line?: number;
  /** 1-based column, when known. */
  column?: number;
  /** A tensor name, config key path or column name that locates the problem inside the file. */
  detail?: string;
}

export class LoraxsError extends Error {
  constructor(message: string, readonly place?: SourcePlace) {
    super(message);
    this.name = 'LoraxsError';
  }

  /** `file:line:col: message` (or `file: message`), the form compilers use, so editors can link it. */
  format(): string {
    if (!this.place) return this.message;
    const { file, line, column } = this.place;
    const at = line !== undefined ? `${file}:${line}${column !== undefined ? `:${column}` : ''}` : file;
    return `${at}: ${this.message}`;
  }
}

/** Throws a LoraxsError built lazily (so hot paths pay nothing when the condition holds). */
export function check(cond: unknown, message: () => string, place?: SourcePlace): asserts cond {
  if (!cond) throw new LoraxsError(message(), place);
}

/** Internal invariant: a failure here is a bug in the engine, not bad input. */
export function assert(cond: unknown, why: () => string): asserts cond {
  if (!cond) throw new Error(`internal error: ${why()}`);
}
