/**
 * Quick fixes for the diagnostics that carry replacement texts (a target that matches no module -> the
 * closest module keys; a rank too big -> the largest allowed; a misspelt column -> the column): one
 * CodeAction per replacement, replacing the diagnostic's range.
 */
import { CodeActionKind } from 'vscode-languageserver/node';
import type { CodeAction, Diagnostic } from 'vscode-languageserver/node';
import { DIAGNOSTIC_SOURCE } from './diagnostics';
import type { DiagnosticData } from './diagnostics';

/** Code actions for the diagnostics of a request's context (those of this server only). */
export function quickFixes(uri: string, diagnostics: readonly Diagnostic[]): CodeAction[] {
  const actions: CodeAction[] = [];
  for (const d of diagnostics) {
    if (d.source !== DIAGNOSTIC_SOURCE) continue;
    const data = d.data as DiagnosticData | undefined;
    const replacements = data?.replacements ?? [];
    replacements.forEach((text, i) => {
      actions.push({
        title: `Replace with '${text}'`,
        kind: CodeActionKind.QuickFix,
        diagnostics: [d],
        isPreferred: i === 0,
        edit: { changes: { [uri]: [{ range: d.range, newText: text }] } },
      });
    });
  }
  return actions;
}
