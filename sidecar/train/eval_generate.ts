/**
 * `training.eval_generate`: task accuracy for causal LMs. For each validation example with a prompt
 * (data.prompt, or the messages before the last assistant turn put through the chat template) the model
 * generates greedily up to `max_tokens` new tokens; the answer is extracted from the generation and from the
 * reference (the response, or the last assistant message) with `answer_pattern`, and exact match is the
 * fraction of examples whose answers are equal (numbers compared as numbers; no answer in the generation
 * counts as wrong).
 *
 * `answer_pattern`: `gsm8k` takes the number after `####` (GSM8K's answer line; commas dropped); any other
 * value is a regular expression whose first capture group (else the whole match) is the answer.
 */
import { LoraxsError } from '../errors';
import type { EvalGenerateConfig, RunConfig } from '../config/types';
import { evaluate } from './evaluation';
import type { MetricValues } from './metrics';
import type { Example } from '../io/examples';
import type { ModelSession } from '../session/model_session';
import { generateFromIds } from '../session/decode';
import type { EngineEvents } from '../records';

export interface GenerationScore {
  exactMatch: number;
  correct: number;
  scored: number;
}

const GSM8K = /####\s*([-+]?[\d,]*\.?\d+)/;

/** The answer in `text` by `pattern`, or null when there is none. */
export function extractAnswer(text: string, pattern: string, configFile?: string): string | null {
  let re: RegExp;
  if (pattern === 'gsm8k') re = GSM8K;
  else {
    try {
      re = new RegExp(pattern);
    } catch (e) {
      throw new LoraxsError(`training.eval_generate.answer_pattern is not a valid regular expression: ${(e as Error).message}`, configFile ? { file: configFile, detail: 'training.eval_generate.answer_pattern' } : undefined);
    }
  }
  const m = re.exec(text);
  if (!m) return null;
  const answer = (m[1] ?? m[0]).trim();
  return pattern === 'gsm8k' ? answer.replace(/,/g, '') : answer;
}

/** Equal answers: as numbers when both are numbers, else as trimmed strings. */
export function sameAnswer(a: string, b: string): boolean {
  const x = Number(a.replace(/,/g, ''));
  const y = Number(b.replace(/,/g, ''));
  if (a.trim() !== '' && b.trim() !== '' && Number.isFinite(x) && Number.isFinite(y)) return x === y;
  return a.trim() === b.trim();
}

/** Exact match over the examples that have a prompt (at most cfg.limit of them). */
export function scoreGenerations(session: ModelSession, examples: Example[], cfg: EvalGenerateConfig, events?: EngineEvents,
  configFile?: string): GenerationScore {
  const scorable = examples.filter((e) => e.promptIds && e.promptIds.length > 0 && e.reference !== undefined);
  if (scorable.length === 0) {
    throw new LoraxsError('training.eval_generate needs validation prompts: data.prompt + data.response, or data.messages with a turn before the last assistant message',
      configFile ? { file: configFile, detail: 'training.eval_generate' } : undefined);
  }
  const chosen = cfg.limit ? scorable.slice(0, cfg.limit) : scorable;
  let correct = 0;
  chosen.forEach((e, i) => {
    const gold = extractAnswer(e.reference!, cfg.answerPattern, configFile) ?? e.reference!.trim();
    const g = generateFromIds(session, e.promptIds!, { maxTokens: cfg.maxTokens });
    const got = extractAnswer(g.text, cfg.answerPattern);
    if (got !== null && sameAnswer(got, gold)) correct++;
    events?.progress?.('generate', i + 1, chosen.length);
  });
  return { exactMatch: correct / chosen.length, correct, scored: chosen.length };
}

/** The validation metrics, with `exact_match` added for a causal LM when training.eval_generate is set. */
export function evaluateWithGeneration(session: ModelSession, examples: Example[], config: RunConfig, padId: number, events?: EngineEvents): MetricValues {
  const metrics = evaluate(session, examples, config.task, config.training.batchSize, padId, events);
  const eg = config.training.evalGenerate;
  if (config.task !== 'causal-lm' || !eg) return metrics;
  return { ...metrics, exact_match: scoreGenerations(session, examples, eg, events, config.file).exactMatch };
}
