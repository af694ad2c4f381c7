/**
 * Reading a run's data files into examples with the run's tokenizer: what train, eval and predict share.
 */
import * as path from 'node:path';
import type { RunConfig } from '../config/types';
import { LoraxsError } from '../errors';
import { readTable } from '../io/data_table';
import { buildExamples, type ExampleSet } from '../io/examples';
import type { TextTokenizer } from '../io/tokenizer';
import { resolveChatTemplate, type ChatTemplate } from '../io/chat_template';
import { pairModeOf } from './pair_mode';

/** The chat template of a run with data.messages (data.chat_template, the adapter's, the model's); else null. */
export function runChatTemplate(config: RunConfig, adapterDir?: string): ChatTemplate | null {
  if (!config.data?.messages) return null;
  return resolveChatTemplate({ modelDir: config.model, adapterDir, override: config.data.chatTemplate ?? null, baseDir: config.file ? path.dirname(config.file) : undefined });
}

/** Examples of `file` with the config's columns and fields; `labelled` false reads no label column. */
export function readExamples(config: RunConfig, file: string, tok: TextTokenizer,
  opts: { labelNames?: string[] | null; labelled?: boolean; adapterDir?: string } = {}): ExampleSet {
  const data = config.data;
  if (!data) throw new LoraxsError('the config has no `data` section', { file: config.file, detail: 'data' });
  const table = readTable(file, { columns: data.columns });
  return buildExamples(table, {
    task: config.task,
    text: data.text,
    prompt: data.prompt,
    response: data.response,
    label: opts.labelled === false ? null : data.label,
    maxLength: config.training.maxLength,
    labelNames: opts.labelNames ?? undefined,
    messages: data.messages ?? null,
    chatTemplate: runChatTemplate(config, opts.adapterDir),
    pairMode: pairModeOf(config),
  }, tok, file);
}
