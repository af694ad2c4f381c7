/**
 * Parsing `*.loraxs.yaml` into a RunConfig, with every problem located at the exact range of the
 * offending key or value (LSP ranges: 0-based line and UTF-16 character), so the CLI can print
 * `file:line:col: message` and the language server can underline it.
 *
 * Stages: YAML syntax (the `yaml` package, YAML 1.2 core schema) -> JSON Schema (loraxs.schema.json, Ajv)
 * -> checks across keys (task vs data fields, columns) -> snake_case to camelCase with defaults filled in
 * and paths resolved against the config file's folder. Checks that need the model or the data (target
 * matches, rank vs module dimensions, data columns of a file with a header) are done by the engine and
 * the language server; they can point at keys with `keyRange` (yaml_positions.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { YAMLError } from 'yaml';
import { LoraxsError } from '../errors';
import type { SourcePlace } from '../errors';
import type { DataConfig, InitKind, RunConfig, Task } from './types';
import {
  ADAPTER_DEFAULTS,
  ANALYSIS_DEFAULTS,
  defaultTargetsFor,
  SVD_DEFAULTS,
  TRAINING_DEFAULTS,
  defaultOutput,
} from './defaults';
import type { AnalysisConfig } from './defaults';
import { modelFamilyOf, positionsOf } from './model_family';
import { capMessage, listText } from './messages';
import { firstInvalidUtf8 } from './utf8';
import { LORAXS_SCHEMA, keysAt, schemaAt, sectionPaths } from './schema';
import { closestName } from './suggest';
import { parseModelRef } from '../hub/repo_id';
import { cachedConfigDir } from '../hub/cached_model';
import { hubPaths } from '../hub/hub_env';
import {
  documentStartRange,
  keyRange,
  formatKeyPath,
  locateKey,
  locateValue,
  parseWithPositions,
  rangeOfOffsets,
} from './yaml_positions';
import type { KeyPath, PositionedDocument, Range } from './yaml_positions';

export type { Range, Position, KeyPath } from './yaml_positions';
export { keyRange, valueRange, formatKeyPath } from './yaml_positions';
export type { AnalysisConfig } from './defaults';

export interface ConfigProblem {
  message: string;
  severity: 'error' | 'warning';
  /** 0-based, LSP style. */
  range: Range;
  /** Key path of the offending key or value, e.g. ['training', 'lr'] or ['adapter', 'targets', 2]. */
  path: (string | number)[];
  /** Texts that could replace the range (the language server offers them as quick fixes). */
  replacements?: string[];
}

/** Errors a message from `loadConfig` lists after the first (the rest are counted). */
const MAX_LISTED_ERRORS = 20;

export interface ParseOptions {
  /** `train`, `eval`, `predict`: `task` and `data` are required (params needs only model and adapter). */
  requireTraining?: boolean;
  /** Read `<model>/config.json` to default `targets` and `task` by family (default true). */
  readModel?: boolean;
}

/** RunConfig plus the optional `analysis:` section (defaults filled in). */
export type ParsedConfig = RunConfig & { analysis: AnalysisConfig };

export interface ParseResult {
  /** Null when there is any error (warnings alone keep the config). */
  config: ParsedConfig | null;
  problems: ConfigProblem[];
}

/** The config as YAML gives it after schema validation (snake_case keys). */
interface RawConfig {
  model: string;
  revision?: string;
  task?: Task;
  data?: {
    train: string;
    validation?: string | null;
    columns?: string[] | null;
    text?: string | [string, string];
    prompt?: string;
    response?: string;
    label?: string;
    messages?: string;
    chat_template?: string;
    pair_mode?: 'cross' | 'bi';
  };
  adapter: {
    rank?: number;
    rank_pattern?: Record<string, number>;
    alpha?: number;
    targets?: string[];
    init?: InitKind;
    init_std?: number;
    factor_seed?: number;
    svd?: { method?: 'randomized' | 'exact'; oversamples?: number; power_iters?: number };
  };
  training?: {
    epochs?: number;
    batch_size?: number;
    grad_accum_steps?: number;
    optimizer?: 'adamw' | 'sgd';
    lr?: number;
    head_lr?: number | null;
    weight_decay?: number;
    warmup_ratio?: number;
    schedule?: 'linear' | 'cosine' | 'constant';
    max_grad_norm?: number;
    max_length?: number;
    dropout?: number | null;
    shuffle?: boolean;
    seed?: number;
    eval_every?: 'epoch' | 'end' | number;
    eval_at_start?: boolean;
    eval_generate?: { max_tokens?: number; answer_pattern?: string; limit?: number | null };
  };
  output?: string;
  compute?: { backend?: 'auto' | 'wasm' | 'tensorflow' | 'torch'; python?: string; processes?: number; mixed_precision?: 'no' | 'bf16' | 'fp16'; gradient_checkpointing?: boolean; memory_budget_gb?: number };
  analysis?: {
    fractions?: number[];
    regions?: Array<'top' | 'middle' | 'bottom'>;
    eval_limit?: number;
    seeds?: number;
  };
}

let compiled: ValidateFunction | null = null;
function validator(): ValidateFunction {
  if (!compiled) {
    const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strict: true });
    compiled = ajv.compile(LORAXS_SCHEMA);
  }
  return compiled;
}

/**
 * Parses and validates the text of a config file. `file` locates relative paths (and names the default
 * output folder); it need not exist. Never throws for bad input: every problem is in `problems`.
 */
export function parseConfigText(text: string, file: string, opts: ParseOptions = {}): ParseResult {
  const absFile = path.resolve(file);
  // Text decoded from bytes that are not UTF-8 holds U+FFFD where they were (loadConfig reports the byte).
  const replaced = text.indexOf('\uFFFD');
  if (replaced >= 0) {
    const before = text.slice(0, replaced);
    const line = before.split('\n').length - 1;
    const character = replaced - (before.lastIndexOf('\n') + 1);
    return {
      config: null,
      problems: [{
        message: 'the config is not valid UTF-8: it has bytes here that are not UTF-8 (shown as \uFFFD); save the file as UTF-8',
        severity: 'error',
        range: { start: { line, character }, end: { line, character: character + 1 } },
        path: [],
      }],
    };
  }
  const pd = parseWithPositions(text);
  const problems: ConfigProblem[] = [];

  for (const e of pd.doc.errors) problems.push(yamlProblem(pd, e, 'error'));
  for (const w of pd.doc.warnings) problems.push(yamlProblem(pd, w, 'warning'));
  if (pd.doc.errors.length > 0) return { config: null, problems: dedupe(problems) };

  let data: unknown;
  try {
    data = pd.doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    problems.push({ message: `cannot read the YAML: ${(e as Error).message}`, severity: 'error', range: documentStartRange(pd), path: [] });
    return { config: null, problems };
  }
  if (data === null || data === undefined) {
    problems.push({
      message: 'the config is empty: it needs at least `model:` (a Hugging Face model folder) and `adapter:`',
      severity: 'error',
      range: documentStartRange(pd),
      path: [],
    });
    return { config: null, problems };
  }

  // `adapter: none`: a head-only baseline; the adapter section's defaults stand in for the schema.
  const adapterNone = typeof data === 'object' && !Array.isArray(data) && (data as { adapter?: unknown }).adapter === 'none';
  if (adapterNone) (data as { adapter: unknown }).adapter = {};
  const validate = validator();
  if (!validate(data)) problems.push(...schemaProblems(pd, data, validate.errors ?? []));
  if (problems.some((p) => p.severity === 'error')) return { config: null, problems: dedupe(problems) };

  const config = buildConfig(pd, data as RawConfig, absFile, opts, problems);
  if (adapterNone) {
    config.headOnly = true;
    if (config.task === 'causal-lm') {
      problems.push({ message: 'adapter: none trains only a classification or regression head; a causal-lm has no head to train: nothing to train',
        severity: 'error', range: locateValue(pd, ['adapter']).range, path: ['adapter'] });
    }
  }
  const hasError = problems.some((p) => p.severity === 'error');
  return { config: hasError ? null : config, problems: dedupe(problems) };
}

/**
 * Reads and parses a config file. Throws a LoraxsError placed at the first error (`file:line:col`) whose
 * message lists every error; warnings go to `onWarning` (if given) and do not stop loading.
 */
export function loadConfig(file: string, opts: ParseOptions & { onWarning?: (p: ConfigProblem) => void } = {}): ParsedConfig {
  const absFile = path.resolve(file);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(absFile);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (e as Error).message;
    throw new LoraxsError(`cannot read the config file: ${why}`, { file: absFile });
  }
  const notUtf8 = firstInvalidUtf8(bytes);
  if (notUtf8) throw new LoraxsError(notUtf8.message, { file: absFile, line: notUtf8.line, column: notUtf8.column });
  const text = bytes.toString('utf8');
  const { config, problems } = parseConfigText(text, absFile, opts);
  const errors = problems.filter((p) => p.severity === 'error');
  if (errors.length > 0 || !config) {
    const [first, ...rest] = errors;
    const listed = rest.slice(0, MAX_LISTED_ERRORS).map((p) => `\n  ${placeText(absFile, p)}: ${capMessage(p.message, 512)}`).join('');
    const unlisted = rest.length > MAX_LISTED_ERRORS ? `\n  … and ${rest.length - MAX_LISTED_ERRORS} more errors` : '';
    const count = rest.length > 0 ? ` (${errors.length} errors in this config)` : '';
    throw new LoraxsError(`${capMessage(first.message, 1024)}${count}${listed}${unlisted}`, problemPlace(absFile, first));
  }
  if (opts.onWarning) for (const p of problems) if (p.severity === 'warning') opts.onWarning(p);
  return config;
}

/** The SourcePlace (1-based line and column) of a problem, for LoraxsError. */
export function problemPlace(file: string, problem: ConfigProblem): SourcePlace {
  return {
    file,
    line: problem.range.start.line + 1,
    column: problem.range.start.character + 1,
    detail: problem.path.length > 0 ? formatKeyPath(problem.path) : undefined,
  };
}

function placeText(file: string, p: ConfigProblem): string {
  return `${file}:${p.range.start.line + 1}:${p.range.start.character + 1}`;
}

/** Drops repeated problems and orders them by position, so the first is the first in the file. */
function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  const byPosition = [...problems].sort(
    (a, b) => a.range.start.line - b.range.start.line || a.range.start.character - b.range.start.character,
  );
  return byPosition.filter((p) => {
    const key = `${p.message}@${p.range.start.line}:${p.range.start.character}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------------
// YAML syntax

/** The YAML syntax errors and warnings of a text, nothing else (for documents too large for full checks). */
export function syntaxProblems(text: string): ConfigProblem[] {
  const pd = parseWithPositions(text);
  const problems = [...pd.doc.errors.map((e) => yamlProblem(pd, e, 'error')), ...pd.doc.warnings.map((w) => yamlProblem(pd, w, 'warning'))];
  return dedupe(problems);
}

function yamlProblem(pd: PositionedDocument, e: YAMLError, severity: 'error' | 'warning'): ConfigProblem {
  const [start, reportedEnd] = e.pos;
  // Some errors (a duplicate key) mark one character: widen that to the word it starts.
  const word = /^[^\s:,[\]{}#]+/.exec(pd.text.slice(start, start + 200));
  const end = reportedEnd - start <= 1 && word ? start + word[0].length : reportedEnd;
  // Without prettyErrors the message is one line; keep only that (some codes add context after a colon).
  const message = `YAML ${severity === 'error' ? 'syntax error' : 'warning'}: ${e.message.split('\n')[0]}`;
  return { message, severity, range: rangeOfOffsets(pd, start, end), path: [] };
}

// ---------------------------------------------------------------------------------------------------
// Schema problems

/** Ajv's `/training/lr` -> ['training', 'lr'], with array indices as numbers. */
function instanceKeyPath(instancePath: string, data: unknown): (string | number)[] {
  if (!instancePath) return [];
  const out: (string | number)[] = [];
  let cur: unknown = data;
  for (const raw of instancePath.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const i = Number(seg);
      out.push(i);
      cur = cur[i];
    } else {
      out.push(seg);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

function valueAt(data: unknown, keyPath: KeyPath): unknown {
  let cur: unknown = data;
  for (const seg of keyPath) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null (no value)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 37) + '...' : v}'`;
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return String(v);
}

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping (key: value lines)',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'true or false',
  null: 'null',
};

/** Messages for keys whose schema is a `oneOf`, where Ajv's per-branch errors would confuse. */
const ONE_OF_MESSAGES: Record<string, string> = {
  'data.text': 'must be a field name, or a list of two field names for sentence pairs',
  'training.eval_every': "must be 'epoch', 'end' or a number of steps (an integer >= 1)",
};

function sectionWords(keyPath: KeyPath): string {
  return keyPath.length === 0 ? 'at the top level' : `in ${formatKeyPath(keyPath)}`;
}

/** Where else in the schema a key of this name is valid, e.g. 'rank' -> 'adapter.rank'. */
function elsewhere(key: string, notIn: KeyPath): string | null {
  for (const section of sectionPaths()) {
    if (section.join('.') === notIn.join('.')) continue;
    if (keysAt(section).includes(key)) return [...section, key].join('.');
  }
  return null;
}

function unknownKeyMessage(key: string, parent: KeyPath): string {
  const candidates = keysAt(parent);
  const moved = elsewhere(key, parent);
  const suggestion = closestName(key, candidates);
  let hint: string;
  if (suggestion) hint = ` (did you mean '${suggestion}'?)`;
  else if (moved) hint = ` ('${key}' belongs in ${moved.split('.').slice(0, -1).join('.') || 'the top level'}: did you mean '${moved}'?)`;
  else hint = candidates.length > 0 ? ` (valid keys: ${candidates.join(', ')})` : '';
  return `unknown key '${key}' ${sectionWords(parent)}${hint}`;
}

function schemaProblems(pd: PositionedDocument, data: unknown, errors: ErrorObject[]): ConfigProblem[] {
  // A `oneOf` error replaces the errors of its branches at and below its path.
  const oneOfPaths = errors.filter((e) => e.keyword === 'oneOf').map((e) => e.instancePath);
  const kept = errors.filter(
    (e) =>
      e.keyword === 'oneOf' ||
      !(e.schemaPath.includes('/oneOf/') && oneOfPaths.some((p) => e.instancePath === p || e.instancePath.startsWith(p + '/'))),
  );
  const problems: ConfigProblem[] = [];
  for (const e of kept) {
    const at = instanceKeyPath(e.instancePath, data);
    const where = formatKeyPath(at);
    const value = valueAt(data, at);
    const got = ` (got ${describeValue(value)})`;
    const valueProblem = (message: string): ConfigProblem => ({
      message,
      severity: 'error',
      range: locateValue(pd, at).range,
      path: at,
    });
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = String((e.params as { additionalProperty: string }).additionalProperty);
        const keyPath = [...at, key];
        problems.push({ message: unknownKeyMessage(key, at), severity: 'error', range: locateKey(pd, keyPath).range, path: keyPath });
        break;
      }
      case 'required': {
        const key = String((e.params as { missingProperty: string }).missingProperty);
        const description = schemaAt([...at, key])?.description?.split(/[.:(]/)[0];
        problems.push({
          message: `missing key '${key}' ${sectionWords(at)}${description ? ` (${description.trim()})` : ''}`,
          severity: 'error',
          range: at.length === 0 ? documentStartRange(pd) : locateKey(pd, at).range,
          path: [...at, key],
        });
        break;
      }
      case 'type': {
        const t = (e.params as { type: string | string[] }).type;
        const types = (Array.isArray(t) ? t : String(t).split(',')).map((x) => TYPE_WORDS[x] ?? x);
        const message = at.length === 0
          ? 'the config must be a mapping of keys (model:, adapter:, training:, ...)'
          : `${where} must be ${types.join(' or ')}${got}`;
        problems.push(valueProblem(message));
        break;
      }
      case 'enum': {
        const allowed = ((e.params as { allowedValues: unknown[] }).allowedValues ?? []).map(String);
        const suggestion = typeof value === 'string' ? closestName(value, allowed) : null;
        problems.push(valueProblem(
          `${where} must be one of ${listText(allowed)} (got ${describeValue(value)}${suggestion ? `; did you mean '${suggestion}'?` : ''})`,
        ));
        break;
      }
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const { comparison, limit } = e.params as { comparison: string; limit: number };
        problems.push(valueProblem(`${where} must be ${comparison} ${limit}${got}`));
        break;
      }
      case 'minLength':
        problems.push(valueProblem(`${where} must not be empty`));
        break;
      case 'minItems':
      case 'maxItems': {
        const { limit } = e.params as { limit: number };
        const word = e.keyword === 'minItems' ? 'at least' : 'at most';
        problems.push(valueProblem(`${where} must have ${word} ${limit} item${limit === 1 ? '' : 's'}`));
        break;
      }
      case 'uniqueItems': {
        const { i, j } = e.params as { i: number; j: number };
        problems.push({
          message: `${where} repeats an item (items ${j} and ${i} are equal)`,
          severity: 'error',
          range: locateValue(pd, [...at, i]).range,
          path: [...at, i],
        });
        break;
      }
      case 'oneOf':
        problems.push(valueProblem(`${where} ${ONE_OF_MESSAGES[at.join('.')] ?? 'has a value of the wrong kind'}${got}`));
        break;
      default:
        problems.push(valueProblem(`${where} ${e.message ?? 'is invalid'}`));
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// Checks across keys, defaults, paths

function resolvePath(dir: string, p: string): string {
  if (p === '~') return os.homedir();
  if (p.startsWith('~/')) return path.join(os.homedir(), p.slice(2));
  return path.resolve(dir, p);
}

function buildConfig(
  pd: PositionedDocument,
  raw: RawConfig,
  absFile: string,
  opts: ParseOptions,
  problems: ConfigProblem[],
): ParsedConfig {
  const dir = path.dirname(absFile);
  const error = (message: string, keyPath: KeyPath, on: 'key' | 'value' = 'key'): void => {
    const range = (on === 'key' ? locateKey(pd, keyPath) : locateValue(pd, keyPath)).range;
    problems.push({ message, severity: 'error', range, path: [...keyPath] });
  };
  const warning = (message: string, keyPath: KeyPath, on: 'key' | 'value' = 'key'): void => {
    const range = (on === 'key' ? locateKey(pd, keyPath) : locateValue(pd, keyPath)).range;
    problems.push({ message, severity: 'warning', range, path: [...keyPath] });
  };

  // A folder that exists wins; `org/name` otherwise is a hub id, resolved by the engine (engine/model_source.ts).
  // Its family comes from the cached config.json when there is one (nothing is fetched here).
  const ref = raw.model.startsWith('~') ? { kind: 'folder' as const, path: resolvePath(dir, raw.model) } : parseModelRef(raw.model, dir);
  const hubModel = ref.kind === 'hub' ? { id: ref.id, revision: raw.revision ?? null } : null;
  const model = ref.kind === 'hub' ? ref.id : ref.path;
  if (raw.revision !== undefined && !hubModel) warning(`revision applies to a Hugging Face hub id in model:, and ${model} is a folder: it is ignored`, ['revision']);
  const modelDir = !hubModel ? model : opts.readModel === false ? undefined : cachedConfigDir(hubPaths().hubCache, hubModel.id, hubModel.revision ?? 'main');
  const family = opts.readModel === false || modelDir === undefined ? null : modelFamilyOf(modelDir);
  const d = raw.data;

  // Task: explicit, else implied by prompt/response data or by a decoder model.
  let task: Task;
  if (raw.task) task = raw.task;
  else if (d && (d.prompt !== undefined || d.response !== undefined || d.messages !== undefined)) task = 'causal-lm';
  else task = family?.kind === 'decoder' ? 'causal-lm' : 'classification';
  if (opts.requireTraining) {
    if (!raw.task) {
      problems.push({
        message: "missing key 'task': training needs classification, regression or causal-lm",
        severity: 'error',
        range: documentStartRange(pd),
        path: ['task'],
      });
    }
    if (!d) {
      problems.push({
        message: "missing key 'data': training needs a data section with at least `train:` (a .jsonl, .csv or .tsv file)",
        severity: 'error',
        range: documentStartRange(pd),
        path: ['data'],
      });
    }
  }

  let data: DataConfig | null = null;
  if (d) {
    checkDataFields(d, task, raw.task !== undefined, error, warning);
    data = {
      train: resolvePath(dir, d.train),
      validation: d.validation ? resolvePath(dir, d.validation) : null,
      columns: d.columns ?? null,
      text: d.text ?? null,
      prompt: d.prompt ?? null,
      response: d.response ?? null,
      label: d.label ?? null,
      ...(d.messages !== undefined ? { messages: d.messages } : {}),
      ...(d.chat_template !== undefined
        ? { chatTemplate: d.chat_template.includes('{{') || d.chat_template.includes('{%') ? d.chat_template : resolvePath(dir, d.chat_template) }
        : {}),
    };
    if (task === 'causal-lm') data.label = null;
    if (d.pair_mode !== undefined) {
      data.pairMode = d.pair_mode;
      if (task === 'causal-lm') warning('data.pair_mode is ignored for causal-lm', ['data', 'pair_mode']);
      else if (!Array.isArray(d.text)) warning('data.pair_mode applies to sentence pairs (data.text: [a, b]); a single text is encoded as it is', ['data', 'pair_mode']);
    }
  }

  const a = raw.adapter;
  const rank = a.rank ?? ADAPTER_DEFAULTS.rank;
  const targets = a.targets ?? (family ? defaultTargetsFor(family.modelType, family.kind) : []);
  if (a.targets) {
    const seen = new Map<string, number>();
    a.targets.forEach((t, i) => {
      if (seen.has(t)) warning(`adapter.targets repeats '${t}' (first at item ${seen.get(t)})`, ['adapter', 'targets', i], 'value');
      else seen.set(t, i);
    });
  }
  for (const key of Object.keys(a.rank_pattern ?? {})) {
    if (key.trim() === '') error('adapter.rank_pattern has an empty module key', ['adapter', 'rank_pattern', key]);
  }
  const init = a.init ?? ADAPTER_DEFAULTS.init;
  if (init === 'svd-bottom' && a.svd?.method === 'randomized') {
    warning("adapter.svd.method 'randomized' is ignored: svd-bottom always uses the exact SVD", ['adapter', 'svd', 'method'], 'value');
  }

  const t = raw.training ?? {};
  const lr = t.lr ?? TRAINING_DEFAULTS.lr;
  const headLr = t.head_lr ?? lr;
  let maxLength = t.max_length ?? TRAINING_DEFAULTS.maxLength;
  const positions = family ? positionsOf(family) : undefined;
  if (family && positions !== undefined && positions >= 2 && maxLength > positions) {
    if (t.max_length === undefined) {
      // The default never asks for more positions than the model has.
      maxLength = positions;
    } else {
      const offset = family.modelType === 'roberta' ? ` (max_position_embeddings ${family.maxPositionEmbeddings} minus RoBERTa's ${family.maxPositionEmbeddings! - positions} padding positions)` : '';
      const range = locateValue(pd, ['training', 'max_length']).range;
      if (family.kind === 'encoder') {
        problems.push({
          message: `training.max_length ${maxLength} exceeds the model's ${positions} positions${offset}: inputs that long cannot be encoded; set it to at most ${positions}`,
          severity: 'error', range, path: ['training', 'max_length'], replacements: [String(positions)],
        });
      } else {
        problems.push({
          message: `training.max_length ${maxLength} exceeds the ${positions} positions ${family.modelType} was trained with (max_position_embeddings): rotary positions run past them, but quality usually drops; consider at most ${positions}`,
          severity: 'warning', range, path: ['training', 'max_length'], replacements: [String(positions)],
        });
      }
    }
  }
  const an = raw.analysis ?? {};
  return {
    file: absFile,
    model,
    ...(hubModel ? { hubModel } : {}),
    task,
    data,
    adapter: {
      rank,
      rankPattern: { ...(a.rank_pattern ?? {}) },
      alpha: a.alpha ?? rank,
      targets,
      init,
      initStd: a.init_std ?? ADAPTER_DEFAULTS.initStd,
      factorSeed: a.factor_seed ?? ADAPTER_DEFAULTS.factorSeed,
      svd: {
        method: a.svd?.method ?? SVD_DEFAULTS.method,
        oversamples: a.svd?.oversamples ?? SVD_DEFAULTS.oversamples,
        powerIters: a.svd?.power_iters ?? SVD_DEFAULTS.powerIters,
      },
    },
    training: {
      epochs: t.epochs ?? TRAINING_DEFAULTS.epochs,
      batchSize: t.batch_size ?? TRAINING_DEFAULTS.batchSize,
      gradAccumSteps: t.grad_accum_steps ?? TRAINING_DEFAULTS.gradAccumSteps,
      optimizer: t.optimizer ?? TRAINING_DEFAULTS.optimizer,
      lr,
      headLr,
      weightDecay: t.weight_decay ?? TRAINING_DEFAULTS.weightDecay,
      warmupRatio: t.warmup_ratio ?? TRAINING_DEFAULTS.warmupRatio,
      schedule: t.schedule ?? TRAINING_DEFAULTS.schedule,
      maxGradNorm: t.max_grad_norm ?? TRAINING_DEFAULTS.maxGradNorm,
      maxLength,
      dropout: t.dropout ?? TRAINING_DEFAULTS.dropout,
      shuffle: t.shuffle ?? TRAINING_DEFAULTS.shuffle,
      seed: t.seed ?? TRAINING_DEFAULTS.seed,
      evalEvery: t.eval_every ?? TRAINING_DEFAULTS.evalEvery,
      // Only when given: absent means true, and leaves the resume hash of older checkpoints unchanged.
      ...(t.eval_at_start !== undefined ? { evalAtStart: t.eval_at_start } : {}),
      ...(t.eval_generate ? { evalGenerate: {
        maxTokens: t.eval_generate.max_tokens ?? 32, answerPattern: t.eval_generate.answer_pattern ?? 'gsm8k', limit: t.eval_generate.limit ?? null,
      } } : {}),
    },
    output: raw.output ? resolvePath(dir, raw.output) : defaultOutput(absFile),
    // `compute:` only when the config has one (its defaults: engine/launch.ts and the schema).
    ...(raw.compute ? {
      compute: {
        backend: raw.compute.backend ?? 'auto',
        python: raw.compute.python ? resolvePath(dir, raw.compute.python) : null,
        processes: raw.compute.processes ?? 1,
        mixedPrecision: raw.compute.mixed_precision ?? 'no',
        gradientCheckpointing: raw.compute.gradient_checkpointing ?? false,
        ...(raw.compute.memory_budget_gb !== undefined ? { memoryBudgetGb: raw.compute.memory_budget_gb } : {}),
      },
    } : {}),
    analysis: {
      fractions: an.fractions ?? [...ANALYSIS_DEFAULTS.fractions],
      regions: an.regions ?? [...ANALYSIS_DEFAULTS.regions],
      evalLimit: an.eval_limit ?? ANALYSIS_DEFAULTS.evalLimit,
      seeds: an.seeds ?? ANALYSIS_DEFAULTS.seeds,
    },
  };
}

type Report = (message: string, keyPath: KeyPath, on?: 'key' | 'value') => void;

/** The data fields a task needs: causal-lm takes text or prompt + response; the others text + label. */
function checkDataFields(
  d: NonNullable<RawConfig['data']>,
  task: Task,
  taskGiven: boolean,
  error: Report,
  warning: Report,
): void {
  const because = taskGiven ? `task ${task}` : `task ${task} (the default here; set task: to change it)`;
  if (d.messages !== undefined || d.chat_template !== undefined) {
    if (task !== 'causal-lm') error(`data.${d.messages !== undefined ? 'messages' : 'chat_template'} is for causal-lm only`, ['data', d.messages !== undefined ? 'messages' : 'chat_template']);
    else if (d.messages !== undefined && (d.text !== undefined || d.prompt !== undefined || d.response !== undefined)) {
      error('give data.messages alone, not with data.text or data.prompt + data.response', ['data', 'messages']);
    }
    if (task === 'causal-lm' && d.messages !== undefined) return;
  }
  if (task === 'causal-lm') {
    const hasPrompt = d.prompt !== undefined;
    const hasResponse = d.response !== undefined;
    if (hasPrompt !== hasResponse) {
      const [present, absent] = hasPrompt ? ['prompt', 'response'] : ['response', 'prompt'];
      error(`data.${present} needs data.${absent}: causal-lm trains on the response after the prompt`, ['data', present]);
    }
    if (d.text !== undefined && (hasPrompt || hasResponse)) {
      error('give either data.text or data.prompt + data.response, not both', ['data', 'text']);
    }
    if (d.text === undefined && !hasPrompt && !hasResponse) {
      error(`${because} needs data.text (train on every token) or data.prompt + data.response (or data.messages for chat)`, ['data']);
    }
    if (Array.isArray(d.text)) error('causal-lm takes one text field, not a pair', ['data', 'text'], 'value');
    if (d.label !== undefined) warning('data.label is ignored for causal-lm', ['data', 'label']);
  } else {
    if (d.label === undefined) error(`${because} needs data.label (the target field)`, ['data']);
    if (d.text === undefined) error(`${because} needs data.text (a field, or [field1, field2] for pairs)`, ['data']);
    for (const key of ['prompt', 'response'] as const) {
      if (d[key] !== undefined) error(`data.${key} is for causal-lm only; ${task} reads data.text and data.label`, ['data', key]);
    }
  }
  if (d.columns) {
    const columns = d.columns;
    const seen = new Set<string>();
    columns.forEach((c, i) => {
      if (seen.has(c)) error(`data.columns repeats '${c}'`, ['data', 'columns', i], 'value');
      seen.add(c);
    });
    const fields: Array<[KeyPath, string]> = [];
    if (typeof d.text === 'string') fields.push([['data', 'text'], d.text]);
    if (Array.isArray(d.text)) d.text.forEach((f, i) => fields.push([['data', 'text', i], f]));
    for (const key of ['label', 'prompt', 'response'] as const) {
      const f = d[key];
      if (f !== undefined) fields.push([['data', key], f]);
    }
    for (const [keyPath, field] of fields) {
      if (columns.includes(field)) continue;
      const suggestion = closestName(field, columns);
      error(
        `${formatKeyPath(keyPath)} '${field}' is not one of data.columns (${listText(columns)})${suggestion ? `; did you mean '${suggestion}'?` : ''}`,
        keyPath,
        'value',
      );
    }
  }
}

/**
 * Adds the line and column to an error about a config key (`place.detail` a dotted key path such as
 * `adapter.rank` or `adapter.rank_pattern.output.dense`) raised without them, so the CLI prints
 * `file:line:col` for semantic errors found after parsing (targets, ranks).
 */
export function placeConfigError(e: unknown, file: string): unknown {
  if (!(e instanceof LoraxsError) || !e.place || e.place.file !== file || e.place.line !== undefined || !e.place.detail) return e;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return e;
  }
  const parts = e.place.detail.split('.');
  // rank_pattern keys are module-name patterns that contain dots themselves.
  const i = parts.indexOf('rank_pattern');
  const keyPath = i >= 0 && i + 1 < parts.length ? [...parts.slice(0, i + 1), parts.slice(i + 1).join('.')] : parts;
  for (let n = keyPath.length; n > 0; n--) {
    const range = keyRange(text, keyPath.slice(0, n));
    if (range) return new LoraxsError(e.message, { ...e.place, line: range.start.line + 1, column: range.start.character + 1 });
  }
  return e;
}
