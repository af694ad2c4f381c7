/**
 * Diagnostics of a config: YAML syntax and schema problems (config/parse.ts), then, in a trusted
 * workspace, the checks that read the model folder and the data files (semantic_checks.ts). Computed a
 * short delay after the last edit of each document (DiagnosticsScheduler).
 */
import { DiagnosticSeverity } from 'vscode-languageserver/node';
import type { Diagnostic } from 'vscode-languageserver/node';
import { parseConfigText } from '../config/parse';
import { parseWithPositions } from '../config/yaml_positions';
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
 * Every problem of a config text. Untrusted: syntax and schema only, and nothing is read from disk (not
 * even the model's config.json, which the parser otherwise reads to choose default targets).
 */
export function lintConfig(text: string, file: string, trusted: boolean): LintProblem[] {
  const { config, problems } = parseConfigText(text, file, { readModel: trusted });
  const out: LintProblem[] = [...problems];
  if (trusted && config) out.push(...semanticProblems(config, parseWithPositions(text)));
  return out;
}

export function toDiagnostic(p: LintProblem): Diagnostic {
  const data: DiagnosticData = { path: p.path };
  if (p.replacements) data.replacements = p.replacements;
  return {
    range: p.range,
    message: p.message,
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
