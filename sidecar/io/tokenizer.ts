/**
 * Tokenizers from a model folder's `tokenizer.json` (and `tokenizer_config.json` when present), run by
 * @huggingface/tokenizers, with the tokenizer's own normalizer, pre-tokenizer, model and post-processor
 * (so BOS/CLS/SEP are added exactly as the Hugging Face tokenizer adds them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { LoraxsError } from '../errors';
import type { ModelConfig } from '../models/types';

export interface TextTokenizer {
  /**
   * Token ids of `text` (and `pair`, for sentence-pair tasks); `typeIds` are 0 for the first text and
   * 1 for the second, as the post-processor assigns them. `addSpecialTokens` defaults to true.
   */
  encode(text: string, opts?: { pair?: string; addSpecialTokens?: boolean }): { ids: number[]; typeIds: number[] };
  /** Text of `ids`; `skipSpecialTokens` drops special tokens (BOS, EOS, PAD, CLS...). */
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  padId: number;
  bosId: number | null;
  eosId: number | null;
  /** Number of ids the tokenizer can produce (largest id + 1, added tokens included). */
  vocabSize: number;
  /** true when the post-processor adds BOS (Llama) */
  addsBos: boolean;
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object `{content, ...}`. */
export function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** A JSON file that must hold an object; `what` names it in the one-line error. */
export function readJson(file: string, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LoraxsError(`${what} is not valid JSON: ${(e as Error).message}`, { file });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new LoraxsError(`${what} must be a JSON object`, { file });
  return json as Record<string, unknown>;
}

/** Tokenizer classes whose fast tokenizer rebuilds its post-processor from `add_bos_token` / `add_eos_token`. */
const BOS_EOS_FLAG_CLASSES = new Set(['LlamaTokenizer', 'LlamaTokenizerFast', 'CodeLlamaTokenizer', 'CodeLlamaTokenizerFast', 'GemmaTokenizer', 'GemmaTokenizerFast']);

/**
 * transformers' LlamaTokenizerFast / GemmaTokenizerFast replace tokenizer.json's post-processor with
 * `[BOS] $A [EOS]` (pair: `... [BOS] $B:1 [EOS]`) according to `add_bos_token` (default true) and
 * `add_eos_token` (default false) of tokenizer_config.json; do the same, so ids match transformers'.
 */
function applyBosEosFlags(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>): void {
  const cls = tokenizerConfig.tokenizer_class;
  if (typeof cls !== 'string' || !BOS_EOS_FLAG_CLASSES.has(cls)) return;
  if (tokenizerConfig.add_bos_token === undefined && tokenizerConfig.add_eos_token === undefined) return;
  const addBos = tokenizerConfig.add_bos_token !== false;
  const addEos = tokenizerConfig.add_eos_token === true;
  const bos = tokenContent(tokenizerConfig.bos_token);
  const eos = tokenContent(tokenizerConfig.eos_token);
  const added = (Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens : []) as { id: number; content: string }[];
  const vocab = ((tokenizerJson.model as { vocab?: unknown } | undefined)?.vocab ?? {}) as Record<string, number>;
  const idOf = (t: string | null): number | undefined => (t === null ? undefined : added.find((a) => a.content === t)?.id ?? (typeof vocab[t] === 'number' ? vocab[t] : undefined));
  const bosId = idOf(bos);
  const eosId = idOf(eos);
  if ((addBos && bosId === undefined) || (addEos && eosId === undefined)) return; // transformers raises; keep the file's own
  const special = (t: string, typeId: number) => ({ SpecialToken: { id: t, type_id: typeId } });
  const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const side = (id: 'A' | 'B', typeId: number) => [
    ...(addBos ? [special(bos!, typeId)] : []), seq(id, typeId), ...(addEos ? [special(eos!, typeId)] : []),
  ];
  const specialTokens: Record<string, unknown> = {};
  if (addBos) specialTokens[bos!] = { id: bos, ids: [bosId], tokens: [bos] };
  if (addEos) specialTokens[eos!] = { id: eos, ids: [eosId], tokens: [eos] };
  tokenizerJson.post_processor = { type: 'TemplateProcessing', single: side('A', 0), pair: [...side('A', 0), ...side('B', 1)], special_tokens: specialTokens };
}

/** Whether a post-processor is (or, in a Sequence, contains) RobertaProcessing. */
function usesRobertaProcessing(post: unknown): boolean {
  if (!post || typeof post !== 'object') return false;
  const p = post as { type?: unknown; processors?: unknown };
  if (p.type === 'RobertaProcessing') return true;
  return p.type === 'Sequence' && Array.isArray(p.processors) && p.processors.some(usesRobertaProcessing);
}

/** Loads `<dir>/tokenizer.json` (+ tokenizer_config.json). `config` supplies pad/eos ids the tokenizer lacks. */
export function loadTokenizer(dir: string, config?: ModelConfig): TextTokenizer {
  const file = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(file)) {
    throw new LoraxsError(`no tokenizer.json in ${dir}: save the tokenizer with transformers' AutoTokenizer.from_pretrained(...).save_pretrained('${dir}') `
      + '(a fast tokenizer writes tokenizer.json)', { file });
  }
  const tokenizerJson = readJson(file, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  const tokenizerConfig = fs.existsSync(configFile) ? readJson(configFile, 'tokenizer_config.json') : {};
  applyBosEosFlags(tokenizerJson, tokenizerConfig);
  // transformers' default since 4.45; the JS library would default to true.
  const libConfig = { ...tokenizerConfig, clean_up_tokenization_spaces: tokenizerConfig.clean_up_tokenization_spaces ?? false };
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokenizerJson, libConfig);
  } catch (e) {
    throw new LoraxsError(`tokenizer.json could not be loaded: ${(e as Error).message}`, { file });
  }

  const idOf = (key: string): number | null => {
    const content = tokenContent(tokenizerConfig[key]);
    const id = content === null ? undefined : tok.token_to_id(content);
    return id ?? null;
  };
  const firstEos = (e: ModelConfig['eosTokenId'] | undefined): number | null => Array.isArray(e) ? e[0] ?? null : e ?? null;
  const padding = tokenizerJson.padding as { pad_id?: unknown } | null | undefined;
  const bosId = idOf('bos_token') ?? config?.bosTokenId ?? null;
  const eosId = idOf('eos_token') ?? firstEos(config?.eosTokenId);
  const padId = idOf('pad_token')
    ?? (typeof padding?.pad_id === 'number' ? padding.pad_id : null)
    ?? config?.padTokenId ?? eosId ?? 0;
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  const robertaTypes = usesRobertaProcessing(tokenizerJson.post_processor);
  const encode: TextTokenizer['encode'] = (text, opts = {}) => {
    const addSpecial = opts.addSpecialTokens ?? true;
    const enc = tok.encode(text, { text_pair: opts.pair ?? null, add_special_tokens: addSpecial, return_token_type_ids: true });
    let typeIds = enc.token_type_ids;
    if (!typeIds || typeIds.length !== enc.ids.length) {
      // No post-processor: the ids are A then B, unchanged.
      const lengthA = opts.pair === undefined ? enc.ids.length : tok.encode(text, { add_special_tokens: false }).ids.length;
      typeIds = enc.ids.map((_, i) => (i < lengthA ? 0 : 1));
    }
    // RoBERTa's post-processor gives every token type 0, pairs included (as the Rust tokenizers library
    // does; RoBERTa has one token type); the JS library numbers the second text 1.
    if (robertaTypes) typeIds = enc.ids.map(() => 0);
    return { ids: enc.ids, typeIds };
  };
  const withSpecial = encode('a').ids;
  const without = encode('a', { addSpecialTokens: false }).ids;
  const addsBos = bosId !== null && withSpecial.length > without.length && withSpecial[0] === bosId;

  return {
    encode,
    decode: (ids, opts = {}) => (ids.length === 0 ? '' : tok.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? false })),
    padId,
    bosId,
    eosId,
    vocabSize,
    addsBos,
  };
}
