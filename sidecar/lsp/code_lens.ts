/**
 * Code lenses on the first line of a config: "Fine-tune" and "Ablate" (commands the client registers,
 * called with the config's URI) and the LoRA-XS trainable-parameter count (Σ r², a label without a
 * command). In an untrusted workspace the count is not computed (it reads the model folder).
 */
import type { CodeLens } from 'vscode-languageserver/node';
import { LoraxsError } from '../errors';
import { computeParams } from '../loraxs/param_counts';
import { CodeLensCommands } from '../protocol';
import { configForParams } from './params_input';
import { HubModelPending } from './hub_models';

const FIRST_LINE = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };

/** The parameter lens's title: `12,288 trainable parameters (LoRA-XS, 24 modules)`, or why it is unknown. */
export function paramsLensTitle(text: string, file: string): string {
  const c = configForParams(text, file);
  if (c instanceof HubModelPending) return 'trainable parameters: reading the model from the Hugging Face hub…';
  if (c instanceof LoraxsError) return c.message.startsWith('the config names no model') ? 'trainable parameters: no model: yet' : 'trainable parameters: see the problems in this config';
  try {
    const report = computeParams(c.input);
    return `${report.loraxs.toLocaleString('en-US')} trainable parameters (LoRA-XS, ${report.modules} modules)`;
  } catch (e) {
    if (e instanceof LoraxsError) return 'trainable parameters: see the problems in this config';
    throw e;
  }
}

export function codeLenses(uri: string, text: string, file: string, trusted: boolean): CodeLens[] {
  const lenses: CodeLens[] = [
    { range: FIRST_LINE, command: { title: '$(play) Fine-tune', command: CodeLensCommands.fineTune, arguments: [uri] } },
  ];
  if (trusted) lenses.push({ range: FIRST_LINE, command: { title: paramsLensTitle(text, file), command: '' } });
  lenses.push({ range: FIRST_LINE, command: { title: 'Ablate', command: CodeLensCommands.ablate, arguments: [uri] } });
  return lenses;
}
