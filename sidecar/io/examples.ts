/**
 * Turning table rows into tokenised examples for one task.
 *
 * - classification: `text` (one field or a pair) and a class `label` (strings or integers). Label names are
 *   sorted (numerically when all are integers); the training set's names are passed on to validation, where
 *   an unknown label is an error naming file, line and value.
 * - regression: `text` and a float `label` target.
 * - causal-lm with `text`: encode with the tokenizer's own special tokens (BOS if its post-processor adds one),
 *   no EOS, loss on every next-token target.
 * - causal-lm with `prompt` + `response`: encode(prompt, with special tokens) + encode(response, without) +
 *   EOS; the loss covers the response and EOS tokens only.
 * - causal-lm with `messages`: a list of {role, content} rendered with the chat template (io/chat_template.ts),
 *   no added special tokens; the loss covers the assistant tokens only.
 * Everything is truncated to `maxLength` tokens (pairs longest-first, as transformers' default truncation).
 * Pairs in `bi` pair mode: each text encoded alone (with special tokens), each truncated to `maxLength`.
 */
import { LoraxsError, check, assert } from '../errors';
import type { DataTable, CellValue } from './data_table';
import type { TextTokenizer } from './tokenizer';
import { chatPromptIds, conversationTokens, parseMessages, type ChatTemplate } from './chat_template';

/** What examples need of a tokenizer (any TextTokenizer fits; chat data also decodes). */
export type ExampleTokenizer = Pick<TextTokenizer, 'encode' | 'eosId'> & Partial<Pick<TextTokenizer, 'decode'>>;

export type ExampleTask = 'classification' | 'regression' | 'causal-lm';

export interface ExampleSpec {
  task: ExampleTask;
  /** A field, or two for pairs; causal-lm: the text field, or null with prompt/response. */
  text: string | [string, string] | null;
  prompt: string | null;
  response: string | null;
  /** Classification / regression target field; null for unlabelled data (prediction). */
  label: string | null;
  maxLength: number;
  /** Classification: the training set's label names (pass them when building validation examples). */
  labelNames?: string[];
  /** causal-lm: the field of message lists, rendered with `chatTemplate`. */
  messages?: string | null;
  chatTemplate?: ChatTemplate | null;
  /** Pairs: `cross` (default) joins them into one sequence; `bi` encodes each text alone (pairIds). */
  pairMode?: 'cross' | 'bi';
}

export interface Example {
  inputIds: number[];
  typeIds: number[];
  /** Classification: class index into labelNames. */
  label?: number;
  /** Regression: the float target. */
  target?: number;
  /** Causal LM, same length as inputIds: 1 where position t's next-token target (inputIds[t + 1]) counts. */
  lossMask?: number[];
  /** Causal LM with prompt + response or messages: the prompt's ids (with the chat template's generation prompt) and the reference reply, for eval_generate. */
  promptIds?: number[];
  reference?: string;
  /** Pair mode `bi`: the second text, encoded alone (inputIds / typeIds hold the first). */
  pairIds?: number[];
  pairTypeIds?: number[];
}

export interface ExampleSet {
  examples: Example[];
  /** Classification: class names in index order; otherwise null. */
  labelNames: string[] | null;
}

/** Builds one example per row. Every error is a LoraxsError naming `file` and, for row problems, the line. */
export function buildExamples(table: DataTable, spec: ExampleSpec, tok: ExampleTokenizer, file: string): ExampleSet {
  check(Number.isInteger(spec.maxLength) && spec.maxLength >= 2, () => `max_length must be an integer >= 2, got ${spec.maxLength}`, { file });
  const requireColumn = (name: string, role: string): void =>
    check(table.columns.includes(name),
      () => `no column "${name}" (named by data.${role}); the columns are: ${table.columns.join(', ')}`, { file, detail: name });

  if (spec.task === 'causal-lm') {
    if (spec.messages) {
      requireColumn(spec.messages, 'messages');
      check(spec.chatTemplate != null && tok.decode !== undefined, () => 'data.messages needs a chat template', { file, detail: 'messages' });
      return { examples: chatExamples(table, spec.messages, spec.maxLength, spec.chatTemplate!, tok as Required<ExampleTokenizer>, file), labelNames: null };
    }
    if (spec.text !== null) {
      check(typeof spec.text === 'string', () => 'causal-lm takes one text field, not a pair', { file, detail: 'text' });
      requireColumn(spec.text, 'text');
      return { examples: causalTextExamples(table, spec.text, spec.maxLength, tok, file), labelNames: null };
    }
    check(spec.prompt !== null && spec.response !== null, () => 'causal-lm needs data.text, or data.prompt and data.response', { file });
    requireColumn(spec.prompt, 'prompt');
    requireColumn(spec.response, 'response');
    check(tok.eosId !== null, () => 'prompt/response training appends EOS, but the tokenizer defines no EOS token', { file });
    return { examples: promptResponseExamples(table, spec.prompt, spec.response, spec.maxLength, tok, tok.eosId, file), labelNames: null };
  }

  check(spec.text !== null, () => `${spec.task} needs data.text`, { file });
  const fields = typeof spec.text === 'string' ? [spec.text] : spec.text;
  for (const f of fields) requireColumn(f, 'text');
  if (spec.label !== null) requireColumn(spec.label, 'label');

  const examples: Example[] = table.rows.map((_, i) => {
    const line = table.lineOf(i);
    const a = textAt(table, i, fields[0], file);
    const b = fields.length === 2 ? textAt(table, i, fields[1], file) : undefined;
    if (b !== undefined && spec.pairMode === 'bi') {
      const eb = encodeTruncated(tok, b, undefined, spec.maxLength, { file, line });
      return { ...encodeTruncated(tok, a, undefined, spec.maxLength, { file, line }), pairIds: eb.inputIds, pairTypeIds: eb.typeIds };
    }
    return encodeTruncated(tok, a, b, spec.maxLength, { file, line });
  });

  if (spec.label === null) return { examples, labelNames: spec.task === 'classification' ? spec.labelNames ?? null : null };
  const labelField = spec.label;

  if (spec.task === 'regression') {
    table.rows.forEach((row, i) => {
      const raw = cell(table, i, labelField, file);
      const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw.trim()) : NaN;
      check(Number.isFinite(value), () => `regression target "${labelField}" must be a finite number, got ${JSON.stringify(raw)}`,
        { file, line: table.lineOf(i), detail: labelField });
      examples[i].target = value;
    });
    return { examples, labelNames: null };
  }

  const keys = table.rows.map((_, i) => labelKey(cell(table, i, labelField, file), table, i, labelField, file));
  const names = spec.labelNames ?? sortLabelNames([...new Set(keys)]);
  const indexOf = new Map(names.map((n, k) => [n, k]));
  keys.forEach((key, i) => {
    const k = indexOf.get(key);
    check(k !== undefined, () => `label ${JSON.stringify(key)} is not one of the training labels (${names.join(', ')})`,
      { file, line: table.lineOf(i), detail: labelField });
    examples[i].label = k;
  });
  return { examples, labelNames: names };
}

/** Label names in class-index order: numeric order when every name is an integer, else string order. */
export function sortLabelNames(names: string[]): string[] {
  const allIntegers = names.every((n) => /^[+-]?\d+$/.test(n));
  return allIntegers ? [...names].sort((x, y) => Number(x) - Number(y)) : [...names].sort();
}

function causalTextExamples(table: DataTable, field: string, maxLength: number, tok: ExampleTokenizer, file: string): Example[] {
  return table.rows.map((_, i) => {
    const enc = tok.encode(textAt(table, i, field, file), { addSpecialTokens: true });
    const n = Math.min(enc.ids.length, maxLength);
    const lossMask = new Array<number>(n).fill(1);
    lossMask[n - 1] = 0; // the last position has no next token
    return { inputIds: enc.ids.slice(0, n), typeIds: enc.typeIds.slice(0, n), lossMask };
  });
}

function chatExamples(table: DataTable, field: string, maxLength: number, tpl: ChatTemplate, tok: Required<ExampleTokenizer>, file: string): Example[] {
  return table.rows.map((_, i) => {
    const line = table.lineOf(i);
    const messages = parseMessages(cell(table, i, field, file), { file, line, detail: field });
    check(messages.some((m) => m.role === 'assistant'), () => 'this conversation has no assistant message to train on', { file, line, detail: field });
    let conv;
    try {
      conv = conversationTokens(tpl, messages, tok);
    } catch (e) {
      if (e instanceof LoraxsError) throw new LoraxsError(e.message, { file, line, detail: field });
      throw e;
    }
    const n = Math.min(conv.ids.length, maxLength);
    const ids = conv.ids.slice(0, n);
    // Position t predicts ids[t + 1]; it counts when that token is an assistant token.
    const lossMask = ids.map((_, t) => (t < n - 1 ? conv.assistantMask[t + 1] : 0));
    const last = messages.length - 1 - [...messages].reverse().findIndex((m) => m.role === 'assistant');
    const example: Example = { inputIds: ids, typeIds: new Array<number>(n).fill(0), lossMask, reference: messages[last].content };
    if (last > 0) example.promptIds = chatPromptIds(tpl, messages.slice(0, last), tok);
    return example;
  });
}

function promptResponseExamples(table: DataTable, promptField: string, responseField: string, maxLength: number,
  tok: ExampleTokenizer, eosId: number, file: string): Example[] {
  return table.rows.map((_, i) => {
    const line = table.lineOf(i);
    const p = tok.encode(textAt(table, i, promptField, file), { addSpecialTokens: true });
    const r = tok.encode(textAt(table, i, responseField, file), { addSpecialTokens: false });
    check(p.ids.length < maxLength,
      () => `the prompt alone is ${p.ids.length} tokens, which leaves no room for the response within max_length ${maxLength}`,
      { file, line, detail: promptField });
    const ids = [...p.ids, ...r.ids, eosId].slice(0, maxLength);
    const typeIds = [...p.typeIds, ...new Array<number>(r.ids.length + 1).fill(0)].slice(0, maxLength);
    // Position t predicts ids[t + 1]; it counts when ids[t + 1] is a response or EOS token.
    const lossMask = ids.map((_, t) => (t >= p.ids.length - 1 && t < ids.length - 1 ? 1 : 0));
    return { inputIds: ids, typeIds, lossMask, promptIds: p.ids, reference: textAt(table, i, responseField, file) };
  });
}

/**
 * Encodes a text or pair with special tokens, truncated to maxLength. Pairs are cut longest-first (the
 * longer side loses its last token until it fits), keeping the post-processor's special tokens, as
 * transformers' `truncation=True` does.
 */
function encodeTruncated(tok: ExampleTokenizer, a: string, b: string | undefined, maxLength: number,
  place: { file: string; line: number }): Example {
  const full = tok.encode(a, { pair: b, addSpecialTokens: true });
  if (full.ids.length <= maxLength) return { inputIds: full.ids, typeIds: full.typeIds };
  const ea = tok.encode(a, { addSpecialTokens: false }).ids;
  const eb = b === undefined ? [] : tok.encode(b, { addSpecialTokens: false }).ids;
  const layout = templateLayout(full.ids, ea, eb);
  if (!layout) {
    // The post-processor did something other than wrap the texts (rare): cut the end.
    return { inputIds: full.ids.slice(0, maxLength), typeIds: full.typeIds.slice(0, maxLength) };
  }
  const specials = full.ids.length - ea.length - eb.length;
  check(specials < maxLength, () => `max_length ${maxLength} leaves no room for text after ${specials} special tokens`, place);
  const [na, nb] = longestFirst(ea.length, eb.length, maxLength - specials);
  // Segments of the full encoding: prefix | a | middle | b | suffix; a and b keep their first na / nb tokens.
  const aEnd = layout.aStart + ea.length;
  const bEnd = layout.bStart + eb.length;
  const pick = (xs: number[]) => [
    ...xs.slice(0, layout.aStart + na), ...xs.slice(aEnd, layout.bStart + nb), ...xs.slice(bEnd),
  ];
  const out = { inputIds: pick(full.ids), typeIds: pick(full.typeIds) };
  assert(out.inputIds.length === maxLength, () => `truncated to ${out.inputIds.length}, expected ${maxLength}`);
  return out;
}

/**
 * Lengths that `longest_first` truncation keeps of texts of na and nb tokens within `budget`, as the Rust
 * tokenizers library (transformers' fast tokenizers) computes them: only the longer text is cut when that
 * suffices; otherwise both get budget / 2, the longer one (the second on a tie) the odd token.
 */
export function longestFirst(na: number, nb: number, budget: number): [number, number] {
  if (na + nb <= budget) return [na, nb];
  if (nb === 0) return [Math.min(na, budget), 0];
  const swap = na > nb;
  let n1 = swap ? nb : na; // the shorter
  let n2 = swap ? na : nb;
  n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = Math.floor(budget / 2);
    n2 = n1 + (budget % 2);
  }
  return swap ? [n2, n1] : [n1, n2];
}

/** Where the plain encodings of a and b sit inside the encoding with special tokens, or null. */
function templateLayout(full: number[], a: number[], b: number[]): { aStart: number; bStart: number } | null {
  const at = (xs: number[], from: number): number => {
    for (let s = from; s + xs.length <= full.length; s++) {
      let ok = true;
      for (let k = 0; k < xs.length && ok; k++) ok = full[s + k] === xs[k];
      if (ok) return s;
    }
    return -1;
  };
  const aStart = at(a, 0);
  if (aStart < 0) return null;
  if (b.length === 0) return { aStart, bStart: full.length };
  const bStart = at(b, aStart + a.length);
  return bStart < 0 ? null : { aStart, bStart };
}

function cell(table: DataTable, i: number, field: string, file: string): CellValue {
  const v = table.rows[i][field];
  check(v !== undefined, () => `this row has no field "${field}"`, { file, line: table.lineOf(i), detail: field });
  return v;
}

function textAt(table: DataTable, i: number, field: string, file: string): string {
  const v = cell(table, i, field, file);
  const line = table.lineOf(i);
  check(v !== null && typeof v !== 'boolean', () => `field "${field}" must be text, got ${JSON.stringify(v)}`, { file, line, detail: field });
  const text = String(v);
  check(text.trim() !== '', () => `field "${field}" is empty`, { file, line, detail: field });
  return text;
}

function labelKey(v: CellValue, table: DataTable, i: number, field: string, file: string): string {
  const line = table.lineOf(i);
  if (typeof v === 'number') {
    check(Number.isInteger(v), () => `class label "${field}" must be a string or an integer, got ${v}`, { file, line, detail: field });
    return String(v);
  }
  if (typeof v === 'boolean') return String(v);
  const s = v === null ? '' : v.trim();
  if (s === '') throw new LoraxsError(`class label "${field}" is empty`, { file, line, detail: field });
  return s;
}
