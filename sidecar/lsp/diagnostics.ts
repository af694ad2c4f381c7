/**
 * Diagnostics of a config: YAML syntax and schema problems (config/parse.ts), then, in a trusted
 * workspace, the checks that read the model folder and the data files (semantic_checks.ts). Computed a
 * short delay after the last edit of each document (DiagnosticsScheduler).
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { DiagnosticSeverity } from 'vscode-languageserver/node';
import type { Diagnostic } from 'vscode-languageserver/node';
import { parseConfigText, syntaxProblems } from '../config/parse';
import { parseWithPositions } from '../config/yaml_positions';
import { capMessage } from '../config/messages';
import { semanticProblems } from './semantic_checks';
import type { LintProblem } from './semantic_checks';

export const DIAGNOSTIC_SOURCE = 'loraxs';

/** What a diagnostic carries for quick fixes. */
export interface DiagnosticData {
  /** Texts that could replace the diagnostic's range. */
  replacements?: string[];
  /** The offending key path. */
  path: (string | number)[];
}

/**
 * Documents above this size (UTF-8 bytes) get YAML syntax checks only, computed in a short-lived worker
 * thread (the syntax tree of a 5 MB list takes hundreds of MB, which a worker gives back when it exits):
 * no schema or model checks, hover, completion, lenses or params.
 */
export const FULL_LINT_MAX_BYTES = 1024 * 1024;
/** Above this, not even the syntax is checked. */
const SYNTAX_CHECK_MAX_BYTES = 32 * 1024 * 1024;
/** Heap of the syntax-check worker. */
const SYNTAX_WORKER_HEAP_MB = 1024;
/** Diagnostics published per document at most (the rest are counted in one more). */
export const MAX_DIAGNOSTICS = 100;

export function tooLargeMessage(bytes: number): string {
  return `this config is ${(bytes / 1024 / 1024).toFixed(1)} MB, over the ${FULL_LINT_MAX_BYTES / 1024 / 1024} MB limit for full checks: only its YAML syntax is checked (no schema, model or data checks, hover or parameter counts)`;
}

/** Whether a document's text is over FULL_LINT_MAX_BYTES. */
export function isTooLargeToLint(text: string): boolean {
  return text.length > FULL_LINT_MAX_BYTES || Buffer.byteLength(text, 'utf8') > FULL_LINT_MAX_BYTES;
}

const START = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };

/**
 * Every problem of a config text. Untrusted: syntax and schema only, and nothing is read from disk (not
 * even the model's config.json, which the parser otherwise reads to choose default targets). At most
 * MAX_DIAGNOSTICS problems, each message capped (config/messages.ts).
 */
export function lintConfig(text: string, file: string, trusted: boolean): LintProblem[] {
  // The syntax of a large document is checked in a worker (lintLargeConfig), never here.
  if (isTooLargeToLint(text)) return [{ message: tooLargeMessage(Buffer.byteLength(text, 'utf8')), severity: 'warning', range: START, path: [] }];
  const { config, problems } = parseConfigText(text, file, { readModel: trusted });
  const out: LintProblem[] = [...problems];
  if (trusted && config) out.push(...semanticProblems(config, parseWithPositions(text)));
  return capProblems(out);
}

/** The first MAX_DIAGNOSTICS problems (errors first), and one more counting the rest. */
export function capProblems(problems: LintProblem[]): LintProblem[] {
  if (problems.length <= MAX_DIAGNOSTICS) return problems;
  const errors = problems.filter((p) => p.severity === 'error');
  const ordered = [...errors, ...problems.filter((p) => p.severity !== 'error')];
  const kept = ordered.slice(0, MAX_DIAGNOSTICS);
  const left = problems.length - kept.length;
  kept.push({ message: `… and ${left} more problems in this config (only the first ${MAX_DIAGNOSTICS} are shown)`, severity: errors.length > MAX_DIAGNOSTICS ? 'error' : 'warning', range: START, path: [] });
  return kept;
}

// ---------------------------------------------------------------------------------------------------
// The syntax of a large document, in a worker thread

interface SyntaxWorkerData {
  loraxsSyntaxCheck: { text: string };
}

export function isSyntaxWorker(): boolean {
  return !isMainThread && parentPort !== null && typeof (workerData as Partial<SyntaxWorkerData> | null)?.loraxsSyntaxCheck === 'object';
}

/** The worker's entry: posts the syntax problems of its text. */
export function runSyntaxWorker(): void {
  const { text } = (workerData as SyntaxWorkerData).loraxsSyntaxCheck;
  let problems: LintProblem[];
  try {
    problems = syntaxProblems(text);
  } catch (e) {
    problems = [{ message: `the YAML syntax could not be checked: ${(e as Error).message}`, severity: 'warning', range: START, path: [] }];
  }
  parentPort!.postMessage(capProblems(problems));
}

/** The problems of a document over FULL_LINT_MAX_BYTES: the size notice and its YAML syntax errors. */
export function lintLargeConfig(text: string, workerScript: string): { done: Promise<LintProblem[]>; cancel: () => void } {
  const bytes = Buffer.byteLength(text, 'utf8');
  const notice: LintProblem = { message: tooLargeMessage(bytes), severity: 'warning', range: START, path: [] };
  if (bytes > SYNTAX_CHECK_MAX_BYTES) {
    notice.message += `; above ${SYNTAX_CHECK_MAX_BYTES / 1024 / 1024} MB not even the syntax is checked`;
    return { done: Promise.resolve([notice]), cancel: () => undefined };
  }
  const worker = new Worker(workerScript, {
    workerData: { loraxsSyntaxCheck: { text } } satisfies SyntaxWorkerData,
    resourceLimits: { maxOldGenerationSizeMb: SYNTAX_WORKER_HEAP_MB },
    stdout: true,
    stderr: true,
  });
  let settled = false;
  const done = new Promise<LintProblem[]>((resolve) => {
    const finish = (problems: LintProblem[]): void => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      resolve([notice, ...problems]);
    };
    worker.once('message', (problems: LintProblem[]) => finish(problems));
    worker.once('error', (e: Error) => finish([{ message: `the YAML syntax could not be checked: ${e.message}`, severity: 'warning', range: START, path: [] }]));
    worker.once('exit', () => finish([]));
  });
  return {
    done,
    cancel: () => {
      settled = true;
      void worker.terminate();
    },
  };
}

export function toDiagnostic(p: LintProblem): Diagnostic {
  const data: DiagnosticData = { path: p.path };
  if (p.replacements) data.replacements = p.replacements;
  return {
    range: p.range,
    message: capMessage(p.message),
    severity: p.severity === 'error' ? DiagnosticSeverity.Error : DiagnosticSeverity.Warning,
    source: DIAGNOSTIC_SOURCE,
    data,
  };
}

/** Runs `compute(uri)` once per document, `delayMs` after its last `schedule(uri)`. */
export class DiagnosticsScheduler {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly delayMs: number, private readonly compute: (uri: string) => void) {}

  schedule(uri: string): void {
    this.cancel(uri);
    this.timers.set(uri, setTimeout(() => {
      this.timers.delete(uri);
      this.compute(uri);
    }, this.delayMs));
  }

  cancel(uri: string): void {
    const t = this.timers.get(uri);
    if (t) clearTimeout(t);
    this.timers.delete(uri);
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
