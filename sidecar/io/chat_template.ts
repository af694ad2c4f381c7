/**
 * Chat templates: OpenAI-style message lists rendered with a model's Jinja `chat_template` (run by
 * @huggingface/jinja, with transformers' `trim_blocks` / `lstrip_blocks` and its variables: `messages`,
 * `add_generation_prompt` and the tokenizer's special tokens), tokenised without added special tokens as
 * transformers' `apply_chat_template` does, and the assistant-token mask that training puts the loss on.
 *
 * The mask, two ways:
 * - a template with `{% generation %}...{% endgeneration %}` blocks: the tokens whose characters fall in a
 *   block (transformers' `return_assistant_tokens_mask`: from the token holding the block's first character
 *   to the one holding its last); the tags are otherwise stripped.
 * - any other template, by prefix rendering: the i-th assistant message's tokens are those of
 *   render(messages[..i]) beyond those of render(messages[..i-1], add_generation_prompt=True). Both must be
 *   token prefixes (the second of the first, the first of the whole conversation's tokens); where a merge
 *   across the boundary or a template that renders earlier turns differently breaks that, it is an error
 *   that names the template.
 *
 * Where the template comes from: `data.chat_template` (a .jinja file, or the template text itself), else the
 * adapter's saved `chat_template.jinja`, else the model's `chat_template.jinja`, else tokenizer_config.json's
 * `chat_template` (a string, or a list of named templates: `default`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Environment, Template } from '@huggingface/jinja';
import { LoraxsError } from '../errors';
import { readJson, tokenContent, type TextTokenizer } from './tokenizer';

export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface ChatTemplate {
  /** The Jinja source. */
  text: string;
  /** Where it came from, named in errors: a file path or `data.chat_template`. */
  source: string;
  /** bos_token, eos_token, ... as strings, from the model's tokenizer_config.json. */
  specialTokens: Record<string, string>;
}

type Tok = Pick<TextTokenizer, 'encode' | 'decode'>;

const START = '\uE000';
const END = '\uE001';
const GENERATION_TAG = /\{%(-?)\s*(end)?generation\s*(-?)%\}/g;
const MACRO = `{% macro __loraxs_generation() %}${START}{{ caller() }}${END}{% endmacro %}{{ '' }}`;

/** The special tokens transformers passes to the template, from a folder's tokenizer_config.json. */
export function specialTokensOf(dir: string): Record<string, string> {
  const file = path.join(dir, 'tokenizer_config.json');
  const cfg = fs.existsSync(file) ? readJson(file, 'tokenizer_config.json') : {};
  const out: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
    const s = tokenContent(cfg[key]);
    if (s !== null) out[key] = s;
  }
  return out;
}

/** A template from tokenizer_config.json's `chat_template` value (a string or a list of named ones). */
function templateFromConfigValue(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t.name === 'default') ?? named[0];
    return typeof pick?.template === 'string' ? pick.template : null;
  }
  return null;
}

/** The template saved in a model or adapter folder (chat_template.jinja, then tokenizer_config.json), or null. */
export function readFolderChatTemplate(dir: string): { text: string; source: string } | null {
  const jinja = path.join(dir, CHAT_TEMPLATE_FILE);
  if (fs.existsSync(jinja)) return { text: fs.readFileSync(jinja, 'utf8'), source: jinja };
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  if (fs.existsSync(cfgFile)) {
    const text = templateFromConfigValue(readJson(cfgFile, 'tokenizer_config.json').chat_template);
    if (text !== null) return { text, source: `${cfgFile} (chat_template)` };
  }
  return null;
}

/** A template file: .jinja text, or a tokenizer_config.json whose chat_template is taken. */
function readTemplateFile(file: string): { text: string; source: string } {
  if (!fs.existsSync(file)) throw new LoraxsError(`chat template file not found: ${file}`, { file });
  if (file.endsWith('.json')) {
    const text = templateFromConfigValue(readJson(file, 'the chat template file').chat_template);
    if (text === null) throw new LoraxsError('this JSON file has no chat_template', { file });
    return { text, source: `${file} (chat_template)` };
  }
  return { text: fs.readFileSync(file, 'utf8'), source: file };
}

/** Whether a data.chat_template value is the template itself rather than a file name. */
export function isInlineTemplate(value: string): boolean {
  return value.includes('{{') || value.includes('{%');
}

export interface ResolveOptions {
  modelDir: string;
  adapterDir?: string;
  /** A template file given on the command line. */
  file?: string;
  /** data.chat_template: the template text, or a file (absolute, or relative to `baseDir`). */
  override?: string | null;
  baseDir?: string;
}

/** The template to use (see the module comment for the order); an error saying how to supply one otherwise. */
export function resolveChatTemplate(opts: ResolveOptions): ChatTemplate {
  const specialTokens = specialTokensOf(opts.modelDir);
  let found: { text: string; source: string } | null = null;
  if (opts.file) found = readTemplateFile(path.resolve(opts.file));
  else if (opts.override) {
    found = isInlineTemplate(opts.override)
      ? { text: opts.override, source: 'data.chat_template' }
      : readTemplateFile(path.resolve(opts.baseDir ?? '.', opts.override));
  }
  found ??= (opts.adapterDir ? readFolderChatTemplate(opts.adapterDir) : null) ?? readFolderChatTemplate(opts.modelDir);
  if (!found) {
    throw new LoraxsError(`the model in ${opts.modelDir} has no chat template (no ${CHAT_TEMPLATE_FILE}, no chat_template in tokenizer_config.json); `
      + 'give one with data.chat_template (a .jinja file or the template text)' + (opts.file === undefined ? ' or --chat-template FILE' : ''),
    { file: path.join(opts.modelDir, 'tokenizer_config.json') });
  }
  return { ...found, specialTokens };
}

type Builtins = Map<string, { value: (args: Array<{ value: unknown }>) => unknown }>;
let stripPatched = false;

/**
 * @huggingface/jinja 0.5.11's str.strip/lstrip/rstrip ignore their argument (Python strips the given
 * characters: Qwen3's template calls `.lstrip('\n')`), so string values get versions that take it. The
 * string class is not exported: it is reached through a value the interpreter makes.
 */
function patchStripWithChars(): void {
  if (stripPatched) return;
  stripPatched = true;
  const env = new Environment();
  env.set('s', 'x');
  const sample = env.lookupVariable('s') as unknown as { builtins?: Builtins };
  const proto = Object.getPrototypeOf(sample) as object;
  const getter = Object.getOwnPropertyDescriptor(proto, 'builtins')?.get;
  const fnClass = sample.builtins?.get('strip')?.constructor as (new (f: (args: Array<{ value: unknown }>) => unknown) => unknown) | undefined;
  const strClass = proto.constructor as new (v: string) => unknown;
  if (!getter || !fnClass) return; // another version: leave it as it is
  const marked = new WeakSet<Builtins>();
  Object.defineProperty(proto, 'builtins', {
    configurable: true,
    get(this: { value: string }) {
      const map = getter.call(this) as Builtins;
      if (!marked.has(map)) {
        marked.add(map);
        const value = this.value;
        const strip = (left: boolean, right: boolean) => new fnClass((args) => {
          const chars = args[0]?.value;
          if (typeof chars !== 'string') return new strClass(left && right ? value.trim() : left ? value.trimStart() : value.trimEnd());
          let a = 0;
          let b = value.length;
          if (left) while (a < b && chars.includes(value[a])) a++;
          if (right) while (b > a && chars.includes(value[b - 1])) b--;
          return new strClass(value.slice(a, b));
        });
        map.set('strip', strip(true, true) as never);
        map.set('lstrip', strip(true, false) as never);
        map.set('rstrip', strip(false, true) as never);
      }
      return map;
    },
  });
}

const compiled = new Map<string, Template>();

function compile(tpl: ChatTemplate): Template {
  patchStripWithChars();
  let t = compiled.get(tpl.text);
  if (!t) {
    if (tpl.text.includes(START) || tpl.text.includes(END)) throw new LoraxsError('the chat template contains private-use characters U+E000/U+E001', { file: tpl.source });
    const source = GENERATION_TAG.test(tpl.text)
      ? MACRO + tpl.text.replace(GENERATION_TAG, (_m, l: string, end: string | undefined, r: string) => (end ? `{%${l} endcall ${r}%}` : `{%${l} call __loraxs_generation() ${r}%}`))
      : tpl.text;
    GENERATION_TAG.lastIndex = 0;
    try {
      t = new Template(source);
    } catch (e) {
      throw new LoraxsError(`the chat template does not parse: ${(e as Error).message}`, { file: tpl.source });
    }
    compiled.set(tpl.text, t);
  }
  return t;
}

/** Whether the template marks assistant text with `{% generation %}` blocks. */
export function hasGenerationTags(tpl: ChatTemplate): boolean {
  GENERATION_TAG.lastIndex = 0;
  const yes = GENERATION_TAG.test(tpl.text);
  GENERATION_TAG.lastIndex = 0;
  return yes;
}

export interface Rendered {
  text: string;
  /** Character ranges [start, end) of `{% generation %}` blocks in `text`. */
  spans: Array<[number, number]>;
}

/** Renders `messages`; `{% generation %}` tags leave no text, their blocks' ranges come back as spans. */
export function renderChat(tpl: ChatTemplate, messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): Rendered {
  for (const m of messages) {
    if (m.content.includes(START) || m.content.includes(END)) throw new LoraxsError('a message contains private-use characters U+E000/U+E001');
  }
  let raw: string;
  try {
    raw = compile(tpl).render({ ...tpl.specialTokens, messages, add_generation_prompt: opts.addGenerationPrompt });
  } catch (e) {
    if (e instanceof LoraxsError) throw e;
    throw new LoraxsError(`the chat template failed: ${(e as Error).message}`, { file: tpl.source });
  }
  let text = '';
  const spans: Array<[number, number]> = [];
  const open: number[] = [];
  for (const ch of raw) {
    if (ch === START) open.push(text.length);
    else if (ch === END) {
      const s = open.pop()!;
      if (open.length === 0) spans.push([s, text.length]);
    } else text += ch;
  }
  return { text, spans };
}

/** Token ids of a chat prompt (the template's generation prompt after the messages), no added special tokens. */
export function chatPromptIds(tpl: ChatTemplate, messages: ChatMessage[], tok: Tok): number[] {
  return tok.encode(renderChat(tpl, messages, { addGenerationPrompt: true }).text, { addSpecialTokens: false }).ids;
}

export interface ConversationTokens {
  ids: number[];
  /** Per token: 1 for assistant tokens (transformers' `assistant_masks`). */
  assistantMask: number[];
}

function isPrefix(a: number[], b: number[]): boolean {
  if (a.length > b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The token holding character `c` of `text` (ids = encode(text)): the largest i whose preceding tokens
 * decode to at most c characters. Decoding must give back the text (it does for byte-level BPE).
 */
function tokenAtChar(ids: number[], c: number, tok: Tok): number {
  let lo = 0;
  let hi = ids.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (tok.decode(ids.slice(0, mid)).length <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Ids and assistant mask of a whole conversation (see the module comment). */
export function conversationTokens(tpl: ChatTemplate, messages: ChatMessage[], tok: Tok): ConversationTokens {
  const full = renderChat(tpl, messages, { addGenerationPrompt: false });
  const ids = tok.encode(full.text, { addSpecialTokens: false }).ids;
  const mask = new Array<number>(ids.length).fill(0);
  if (hasGenerationTags(tpl)) {
    if (full.spans.length > 0 && tok.decode(ids) !== full.text) {
      throw new LoraxsError('the tokenizer does not decode the rendered conversation back to its text, so the {% generation %} blocks '
        + 'cannot be placed on tokens; remove the tags to use prefix rendering', { file: tpl.source });
    }
    for (const [s, e] of full.spans) {
      if (e <= s) continue;
      const first = tokenAtChar(ids, s, tok);
      const last = tokenAtChar(ids, e - 1, tok);
      for (let t = first; t <= last; t++) mask[t] = 1;
    }
    return { ids, assistantMask: mask };
  }
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = tok.encode(renderChat(tpl, messages.slice(0, i), { addGenerationPrompt: true }).text, { addSpecialTokens: false }).ids;
    const through = tok.encode(renderChat(tpl, messages.slice(0, i + 1), { addGenerationPrompt: false }).text, { addSpecialTokens: false }).ids;
    if (!isPrefix(before, through)) {
      throw new LoraxsError(`the chat template ${tpl.source} breaks prefix rendering at message ${i + 1} (assistant): the tokens of the `
        + 'conversation up to it with the generation prompt are not a prefix of the tokens with the reply (a token merges across the '
        + 'boundary, or the template renders the turn differently); add {% generation %} tags around assistant text or use another data.chat_template');
    }
    if (!isPrefix(through, ids)) {
      throw new LoraxsError(`the chat template ${tpl.source} breaks prefix rendering at message ${i + 1} (assistant): the conversation up to `
        + 'this reply does not tokenise as a prefix of the whole conversation (the template renders earlier turns differently once later '
        + 'ones follow); add {% generation %} tags around assistant text or use another data.chat_template');
    }
    for (let t = before.length; t < through.length; t++) mask[t] = 1;
  });
  return { ids, assistantMask: mask };
}

/** Reads a data row's messages field: a list of {role, content} (or its JSON text). */
export function parseMessages(value: unknown, where: { file: string; line?: number; detail?: string }): ChatMessage[] {
  let v = value;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch {
      throw new LoraxsError('the messages field must be a list of {role, content} (or its JSON text)', where);
    }
  }
  if (!Array.isArray(v) || v.length === 0) throw new LoraxsError('the messages field must be a non-empty list of {role, content}', where);
  return v.map((m, k) => {
    if (!m || typeof m !== 'object' || typeof (m as ChatMessage).role !== 'string' || typeof (m as ChatMessage).content !== 'string') {
      throw new LoraxsError(`message ${k + 1} must be an object with string "role" and "content"`, where);
    }
    return m as ChatMessage;
  });
}
