/**
 * Completion in a config: keys of the section at the cursor (from the schema), enum values, target module
 * keys read from the actual model (for `targets` items and `rank_pattern` keys), data field names from the
 * training file's header, and model folders beside the config. Model and data are read only when trusted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMap, isScalar } from 'yaml';
import { CompletionItemKind, MarkupKind } from 'vscode-languageserver/node';
import type { CompletionItem } from 'vscode-languageserver/node';
import { LoraxsError } from '../errors';
import { keysAt, schemaAt } from '../config/schema';
import type { SchemaNode } from '../config/schema';
import { parseWithPositions } from '../config/yaml_positions';
import { keyMatches } from '../loraxs/targets';
import { moduleTypeKeys, targetKeysOf } from '../loraxs/target_keys';
import { configForParams } from './params_input';
import { modelInfo } from './model_info';
import { previewTable } from './data_preview';
import { completionSpot } from './yaml_cursor';

const typeText = (s: SchemaNode): string => (Array.isArray(s.type) ? s.type.join(' | ') : s.type ?? (s.oneOf ? s.oneOf.map(typeText).join(' | ') : ''));

function keyItem(key: string, schema: SchemaNode | null): CompletionItem {
  const isSection = schema?.type === 'object';
  const detail = [schema ? typeText(schema) : '', schema?.default !== undefined ? `default ${JSON.stringify(schema.default)}` : '']
    .filter(Boolean).join(', ');
  return {
    label: key,
    kind: isSection ? CompletionItemKind.Module : CompletionItemKind.Property,
    detail: detail || undefined,
    documentation: schema?.description ? { kind: MarkupKind.Markdown, value: schema.description } : undefined,
    insertText: isSection ? `${key}:` : `${key}: `,
  };
}

/** Keys already written in the mapping at `parent`. */
function writtenKeys(text: string, parent: string[]): Set<string> {
  try {
    const node = parent.length ? parseWithPositions(text).doc.getIn(parent, true) : parseWithPositions(text).doc.contents;
    if (!isMap(node)) return new Set();
    return new Set(node.items.map((p) => (isScalar(p.key) ? String(p.key.value) : '')).filter(Boolean));
  } catch {
    return new Set();
  }
}

/** Target keys of the model the config names: one per module type first, then every other suffix. */
function targetItems(text: string, file: string, asKeys: boolean): CompletionItem[] {
  const c = configForParams(text, file);
  if (c instanceof LoraxsError) return [];
  const info = modelInfo(c.input.model, c.input.headers);
  if (info instanceof LoraxsError) return [];
  const primary = moduleTypeKeys(info.modules);
  const all = [...primary, ...targetKeysOf(info.modules).filter((k) => !primary.includes(k) && !/\.\d+$|^\d/.test(k))];
  return all.map((key, i) => {
    const matched = info.modules.filter((m) => keyMatches(m.name, key));
    const dims = [...new Set(matched.map((m) => `${m.outFeatures} × ${m.inFeatures}`))].join(', ');
    return {
      label: key,
      kind: CompletionItemKind.Field,
      detail: `${matched.length} module${matched.length === 1 ? '' : 's'}, ${dims}`,
      documentation: { kind: MarkupKind.Markdown, value: matched.slice(0, 6).map((m) => `- \`${m.name}\``).join('\n') + (matched.length > 6 ? '\n- ...' : '') },
      sortText: `${primary.includes(key) ? 0 : 1}${String(i).padStart(4, '0')}`,
      insertText: asKeys ? `${key}: ` : key,
    };
  });
}

/** Column names of the training file (header row, data.columns, or JSONL keys). */
function columnItems(text: string, file: string): CompletionItem[] {
  let raw: unknown;
  try {
    raw = parseWithPositions(text).doc.toJS();
  } catch {
    return [];
  }
  const data = (raw as { data?: { train?: unknown; columns?: unknown } } | null)?.data;
  if (typeof data?.train !== 'string') return [];
  const columns = Array.isArray(data.columns) ? data.columns.filter((x): x is string => typeof x === 'string') : null;
  const table = previewTable(path.resolve(path.dirname(path.resolve(file)), data.train), columns);
  if (table instanceof LoraxsError) return [];
  return table.columns.map((col) => {
    const sample = table.rows[0]?.[col];
    return { label: col, kind: CompletionItemKind.Field, detail: sample === undefined ? 'column' : `column, e.g. ${JSON.stringify(sample).slice(0, 60)}` };
  });
}

/** Folders beside the config (and one level down) that hold a config.json. */
function modelFolderItems(file: string): CompletionItem[] {
  const dir = path.dirname(path.resolve(file));
  const out: CompletionItem[] = [];
  const visit = (rel: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('.') || e.name === 'node_modules') continue;
      const sub = rel ? `${rel}/${e.name}` : e.name;
      if (fs.existsSync(path.join(dir, sub, 'config.json'))) out.push({ label: sub, kind: CompletionItemKind.Folder, detail: 'model folder' });
      else if (depth < 2) visit(sub, depth + 1);
    }
  };
  visit('', 0);
  return out;
}

function enumItems(schema: SchemaNode | null): CompletionItem[] {
  if (!schema) return [];
  const values: unknown[] = [...(schema.enum ?? [])];
  for (const alt of schema.oneOf ?? []) values.push(...(alt.enum ?? []));
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (types.includes('boolean')) values.push(true, false);
  return values.map((v) => ({ label: String(v), kind: CompletionItemKind.EnumMember, detail: schema.default === v ? 'default' : undefined }));
}

const FIELD_KEYS = new Set(['data.text', 'data.label', 'data.prompt', 'data.response']);

/** Completion items at a position of a config's text. */
export function completionsAt(text: string, file: string, line: number, character: number, trusted: boolean): CompletionItem[] {
  const spot = completionSpot(text, line, character);
  if (!spot) return [];
  if (spot.kind === 'key') {
    const parentKey = spot.parent.join('.');
    if (parentKey === 'adapter.rank_pattern') return trusted ? targetItems(text, file, true) : [];
    const written = writtenKeys(text, spot.parent);
    return keysAt(spot.parent).filter((k) => !written.has(k) || k === spot.prefix).map((k) => keyItem(k, schemaAt([...spot.parent, k])));
  }
  const key = spot.path.join('.');
  if (spot.kind === 'item') {
    if (key === 'adapter.targets') return trusted ? targetItems(text, file, false) : [];
    if (key === 'data.text') return trusted ? columnItems(text, file) : [];
    return enumItems(schemaAt([...spot.path, 0]));
  }
  if (FIELD_KEYS.has(key)) return trusted ? columnItems(text, file) : [];
  if (key === 'model') return trusted ? modelFolderItems(file) : [];
  return enumItems(schemaAt(spot.path));
}
