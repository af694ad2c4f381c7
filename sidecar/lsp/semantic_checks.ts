/**
 * Checks of a parsed config against the model folder and the data files, without loading weights or whole
 * data files: the model folder and its checkpoint, targets that match no module (with the closest module
 * keys as replacements), ranks above a module's smaller dimension, max_length above the model's positions,
 * data files and columns, and whether the task fits the model and the first rows' labels. Each problem is
 * placed on the key or value that causes it.
 */
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import type { ConfigProblem, ParsedConfig } from '../config/parse';
import { closestName } from '../config/suggest';
import { locateKey, locateValue } from '../config/yaml_positions';
import type { KeyPath, PositionedDocument, Range } from '../config/yaml_positions';
import type { DataTable } from '../io/data_table';
import type { LinearModule } from '../models/types';
import { keyMatches, longestMatch, rankFor, closestSuffixes } from '../loraxs/targets';
import { OTHER_FAMILY_KEYS, moduleTypeKeys, targetKeysOf } from '../loraxs/target_keys';
import { configModelInfo } from './model_info';
import type { ModelInfo } from './model_info';
import { PREVIEW_ROWS, previewTable } from './data_preview';
import { listText } from '../config/messages';

/** A problem with, optionally, texts that could replace its range (offered as quick fixes). */
export interface LintProblem extends ConfigProblem {
  replacements?: string[];
}

/** Where problems go: the exact key or value when it is in the text, else its nearest written ancestor. */
class Reporter {
  readonly problems: LintProblem[] = [];
  constructor(private readonly pd: PositionedDocument) {}

  /** Whether the key path is written in the config (not a default). */
  has(keyPath: KeyPath): boolean {
    return locateKey(this.pd, keyPath).exact;
  }

  rangeOf(keyPath: KeyPath, on: 'key' | 'value'): Range {
    return (on === 'key' ? locateKey(this.pd, keyPath) : locateValue(this.pd, keyPath)).range;
  }

  add(severity: 'error' | 'warning', message: string, keyPath: KeyPath, on: 'key' | 'value', replacements?: string[]): void {
    const problem: LintProblem = { message, severity, range: this.rangeOf(keyPath, on), path: [...keyPath] };
    if (replacements && replacements.length > 0 && this.has(keyPath)) problem.replacements = replacements;
    this.problems.push(problem);
  }
}

/** All problems found by reading the model folder and the data files named by `config`. */
export function semanticProblems(config: ParsedConfig, pd: PositionedDocument): LintProblem[] {
  const report = new Reporter(pd);
  // A hub model being fetched (null) is checked when its headers land (the server lints again then).
  const info = configModelInfo(config);
  if (info === null) {
    // nothing to check yet
  } else if (info instanceof LoraxsError) {
    report.add('error', info.message, ['model'], 'value');
  } else {
    if (info.checkpointError) report.add('error', info.checkpointError.message, ['model'], 'value');
    checkTaskFitsModel(config, info, report);
    checkTargetsAndRanks(config, info.modules, report);
    // max_length against the model's positions: config/parse.ts (it reads config.json when trusted).
  }
  if (config.data) checkData(config, report);
  return report.problems;
}

function checkTaskFitsModel(config: ParsedConfig, info: ModelInfo, report: Reporter): void {
  if (config.task === 'causal-lm' && info.config.kind === 'encoder') {
    const where: KeyPath = report.has(['task']) ? ['task'] : ['model'];
    report.add('error',
      `task causal-lm needs a decoder model (llama, mistral, qwen2, gemma); ${path.basename(info.dir)} is a ${info.config.modelType} encoder (use classification or regression)`,
      where, 'value', ['classification', 'regression']);
  }
}

/** The closest module keys to an unmatched target: the other family's name for the layer, then near spellings. */
function targetSuggestions(key: string, modules: readonly LinearModule[]): string[] {
  const keys = targetKeysOf(modules);
  const out: string[] = [];
  const other = OTHER_FAMILY_KEYS[key];
  if (other && keys.includes(other)) out.push(other);
  for (const s of closestSuffixes(key, modules.map((m) => m.name))) if (!out.includes(s)) out.push(s);
  return out.slice(0, 3);
}

function checkTargetsAndRanks(config: ParsedConfig, modules: readonly LinearModule[], report: Reporter): void {
  const { targets, rank, rankPattern } = config.adapter;
  const written = report.has(['adapter', 'targets']);
  let allMatch = true;
  targets.forEach((key, i) => {
    if (modules.some((m) => keyMatches(m.name, key))) return;
    allMatch = false;
    const suggestions = targetSuggestions(key, modules);
    const hint = suggestions.length ? `; did you mean ${suggestions.map((s) => `'${s}'`).join(' or ')}?` : '';
    const where: KeyPath = written ? ['adapter', 'targets', i] : ['adapter'];
    report.add('error',
      `target '${key}' matches no module of this model${hint} (module keys: ${moduleTypeKeys(modules).join(', ')})`,
      where, written ? 'value' : 'key', suggestions);
  });
  if (!allMatch) return;

  // Ranks above min(out, in), grouped by the key that sets them (adapter.rank or a rank_pattern key).
  const tooBig = new Map<string, { r: number; modules: LinearModule[] }>();
  const adapted: LinearModule[] = [];
  for (const m of modules) {
    if (longestMatch(m.name, targets) === undefined) continue;
    adapted.push(m);
    const r = rankFor(m.name, rank, rankPattern);
    if (r <= Math.min(m.outFeatures, m.inFeatures)) continue;
    const source = longestMatch(m.name, Object.keys(rankPattern)) ?? '';
    const entry = tooBig.get(source) ?? { r, modules: [] };
    entry.modules.push(m);
    tooBig.set(source, entry);
  }
  for (const [source, { r, modules: bad }] of tooBig) {
    const limit = Math.min(...bad.map((m) => Math.min(m.outFeatures, m.inFeatures)));
    const first = bad[0];
    const more = bad.length > 1 ? ` and ${bad.length - 1} other module${bad.length > 2 ? 's' : ''}` : '';
    const which = source === '' ? (report.has(['adapter', 'rank']) ? 'rank' : `the default rank ${r}`) : `rank_pattern['${source}'] = ${r}`;
    const where: KeyPath = source === '' ? (report.has(['adapter', 'rank']) ? ['adapter', 'rank'] : ['adapter']) : ['adapter', 'rank_pattern', source];
    report.add('error',
      `${which === 'rank' ? `rank ${r}` : which} exceeds min(out, in) = ${limit} of ${first.name} (${first.outFeatures} × ${first.inFeatures})${more}; the rank can be at most ${limit} here`,
      where, where.length === 1 ? 'key' : 'value', [String(limit)]);
  }
  for (const key of Object.keys(rankPattern)) {
    if (adapted.some((m) => keyMatches(m.name, key))) continue;
    const near = closestName(key, targetKeysOf(adapted));
    report.add('error',
      `rank_pattern key '${key}' matches none of the adapted modules${near ? `; did you mean '${near}'?` : ''}`,
      ['adapter', 'rank_pattern', key], 'key', near ? [near] : undefined);
  }
}

/** The data fields a config reads, with their key paths. */
function fieldsOf(config: ParsedConfig): Array<[KeyPath, string]> {
  const d = config.data!;
  const fields: Array<[KeyPath, string]> = [];
  if (typeof d.text === 'string') fields.push([['data', 'text'], d.text]);
  if (Array.isArray(d.text)) d.text.forEach((f, i) => fields.push([['data', 'text', i], f]));
  for (const key of ['label', 'prompt', 'response'] as const) {
    const f = d[key];
    if (f) fields.push([['data', key], f]);
  }
  return fields;
}

function checkData(config: ParsedConfig, report: Reporter): void {
  const d = config.data!;
  const files: Array<['train' | 'validation', string]> = [['train', d.train]];
  if (d.validation) files.push(['validation', d.validation]);
  let trainTable: DataTable | undefined;
  for (const [key, file] of files) {
    const table = previewTable(file, d.columns);
    if (table instanceof LoraxsError) {
      const line = table.place?.line !== undefined ? ` (line ${table.place.line})` : '';
      report.add('error', `${table.message}${line}`, ['data', key], 'value');
      continue;
    }
    const columnsOk = checkColumns(config, table, key, report);
    if (key === 'train' && columnsOk) checkLabels(config, table, report);
    if (key === 'train') trainTable = table;
  }
  // Only for a run that can start: with an error in the config, the schedule is not the news.
  if (trainTable && !report.problems.some((p) => p.severity === 'error')) checkSomeUpdateLearns(config, trainTable, report);
}

/**
 * With a data file small enough to be read whole by the preview: a run of one update whose warmup gives it
 * lr 0 (the schedule's first multiplier is 0 during warmup) changes nothing.
 */
function checkSomeUpdateLearns(config: ParsedConfig, table: DataTable, report: Reporter): void {
  const t = config.training;
  if (t.lr === 0 || t.warmupRatio <= 0 || table.rows.length === 0 || table.rows.length >= PREVIEW_ROWS) return;
  const perEpoch = Math.ceil(Math.ceil(table.rows.length / t.batchSize) / t.gradAccumSteps);
  if (perEpoch * t.epochs !== 1) return;
  const where: KeyPath = report.has(['training', 'warmup_ratio']) ? ['training', 'warmup_ratio'] : report.has(['training']) ? ['training'] : ['data', 'train'];
  report.add('warning',
    `this run makes a single update (${table.rows.length} training rows, batch_size ${t.batchSize}${t.gradAccumSteps > 1 ? ` × grad_accum_steps ${t.gradAccumSteps}` : ''}, ${t.epochs} epoch), and warmup_ratio ${t.warmupRatio} gives that update lr 0: nothing is learned; set warmup_ratio: 0, a smaller batch_size or more epochs`,
    where, where.length === 2 ? 'value' : 'key', where[1] === 'warmup_ratio' ? ['0'] : undefined);
}

/** Reports fields missing from the file's columns; true when every field is there. */
function checkColumns(config: ParsedConfig, table: DataTable, which: string, report: Reporter): boolean {
  // With data.columns the parser already checks the fields against them.
  if (config.data!.columns) return true;
  let ok = true;
  const name = path.basename(table.file);
  for (const [keyPath, field] of fieldsOf(config)) {
    if (table.columns.includes(field)) continue;
    ok = false;
    const near = closestName(field, table.columns);
    report.add('error',
      `column '${field}' is not in ${which === 'train' ? '' : 'the validation file '}${name} (its columns: ${listText(table.columns)})${near ? `; did you mean '${near}'?` : ''}`,
      keyPath, 'value', near ? [near] : undefined);
  }
  return ok;
}

/** Whether the first rows' labels fit the task: numbers for regression; classes (not a continuum) for classification. */
function checkLabels(config: ParsedConfig, table: DataTable, report: Reporter): void {
  const field = config.data!.label;
  if (!field || config.task === 'causal-lm') return;
  const name = path.basename(table.file);
  const numberOf = (v: unknown): number => (typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v.trim()) : NaN);
  if (config.task === 'regression') {
    const bad = table.rows.findIndex((row) => !Number.isFinite(numberOf(row[field])));
    if (bad >= 0) {
      report.add('error',
        `task regression needs a number in '${field}', but line ${table.lineOf(bad)} of ${name} has ${JSON.stringify(table.rows[bad][field] ?? null)}; for class labels use task: classification`,
        ['data', 'label'], 'value');
    }
    return;
  }
  const values = table.rows.map((row) => numberOf(row[field]));
  const fractional = values.filter((v) => Number.isFinite(v) && !Number.isInteger(v));
  if (values.every(Number.isFinite) && fractional.length > 0) {
    report.add('warning',
      `the labels in '${field}' look like continuous numbers (e.g. ${fractional.slice(0, 3).join(', ')} in ${name}); classification makes each distinct value a class: for a numeric target use task: regression`,
      report.has(['task']) ? ['task'] : ['data', 'label'], 'value', report.has(['task']) ? ['regression'] : undefined);
  }
}
