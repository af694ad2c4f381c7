/**
 * What is under the cursor in a config: the key path of the key or value at an offset (hover), and, for
 * completion, where a key or value is being typed, read from the lines' indentation because the YAML is
 * often incomplete while typing.
 */
import { isMap, isPair, isScalar, isSeq } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { PositionedDocument, Range } from '../config/yaml_positions';
import { rangeOfOffsets } from '../config/yaml_positions';

export interface NodeAtOffset {
  /** Key path, sequence items as indices: ['adapter', 'targets', 1]. */
  path: (string | number)[];
  /** On a mapping key, or on a value (a scalar, or a sequence item). */
  on: 'key' | 'value';
  range: Range;
}

const contains = (node: YamlNode | null | undefined, offset: number): boolean =>
  !!node?.range && node.range[0] <= offset && offset <= node.range[1];

/** The deepest key or scalar value at `offset`, or null (blank space, comments). */
export function nodeAtOffset(pd: PositionedDocument, offset: number): NodeAtOffset | null {
  const walk = (node: unknown, at: (string | number)[]): NodeAtOffset | null => {
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair) || !isScalar(pair.key)) continue;
        const key = String(pair.key.value);
        const keyNode = pair.key as YamlNode;
        if (contains(keyNode, offset)) return { path: [...at, key], on: 'key', range: rangeOfOffsets(pd, keyNode.range![0], keyNode.range![1]) };
        const value = pair.value as YamlNode | null;
        if (contains(value, offset)) return walk(value, [...at, key]);
      }
      return null;
    }
    if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) {
        const item = node.items[i] as YamlNode;
        if (contains(item, offset)) return walk(item, [...at, i]);
      }
      return null;
    }
    if (isScalar(node) && node.range) return { path: at, on: 'value', range: rangeOfOffsets(pd, node.range[0], node.range[1]) };
    return null;
  };
  return walk(pd.doc.contents, []);
}

/** Where completion is asked for. */
export type CompletionSpot =
  /** A key of the mapping at `parent` (the word typed so far is `prefix`). */
  | { kind: 'key'; parent: string[]; prefix: string }
  /** The value of the key at `path` (after `key: `). */
  | { kind: 'value'; path: string[]; prefix: string }
  /** An item of the sequence at `path` (`- ` block item or inside `[...]`). */
  | { kind: 'item'; path: string[]; prefix: string };

const indentOf = (line: string): number => line.length - line.trimStart().length;
const KEY_LINE = /^(\s*)(?:-\s+)?([^\s:#'"][^:#]*?|"[^"]*"|'[^']*'):(?:\s+(.*))?$/;

function unquote(k: string): string {
  return /^(["']).*\1$/.test(k) ? k.slice(1, -1) : k;
}

/**
 * The keys enclosing a line at `indent`: the nearest key lines above with smaller indentation (or, for a
 * block sequence item, a key at the same indentation whose value is the sequence).
 */
function enclosingPath(lines: string[], lineNo: number, indent: number, sameIndentOwner: boolean): string[] {
  const path: string[] = [];
  let limit = indent;
  let allowEqual = sameIndentOwner;
  for (let i = lineNo - 1; i >= 0; i--) {
    if (limit === 0 && !allowEqual) break;
    const line = lines[i];
    const trimmed = line.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const ind = indentOf(line);
    const isItem = trimmed.startsWith('-');
    const owns = ind < limit || (allowEqual && ind === limit && !isItem);
    if (!owns) continue;
    const m = KEY_LINE.exec(line);
    if (!m || isItem) break; // not a `key:` line, or a sequence of mappings (no such shape in the schema)
    path.unshift(unquote(m[2].trim()));
    limit = ind;
    allowEqual = false;
  }
  return path;
}

/** The completion spot at a position, from the text's lines. */
export function completionSpot(text: string, line: number, character: number): CompletionSpot | null {
  const lines = text.split(/\r?\n/);
  const current = lines[line] ?? '';
  const before = current.slice(0, character);
  if (before.trimStart().startsWith('#')) return null;

  // Inside a flow sequence: `targets: [query, va`
  const flow = /^(\s*)([A-Za-z_][\w.-]*):\s*\[([^\]]*)$/.exec(before);
  if (flow) {
    const parent = enclosingPath(lines, line, flow[1].length, false);
    const prefix = flow[3].split(',').pop()!.trim();
    return { kind: 'item', path: [...parent, flow[2]], prefix };
  }
  // A value after `key: `
  const value = /^(\s*)(?:-\s+)?([A-Za-z_][\w.-]*):\s+(\S*)$/.exec(before);
  if (value) {
    const parent = enclosingPath(lines, line, value[1].length, false);
    return { kind: 'value', path: [...parent, value[2]], prefix: value[3].replace(/^["']/, '') };
  }
  // A block sequence item: `  - que`
  const item = /^(\s*)-\s+([^\s:#]*)$/.exec(before);
  if (item) {
    const owner = enclosingPath(lines, line, item[1].length, true);
    return { kind: 'item', path: owner, prefix: item[2] };
  }
  // A key being typed
  const key = /^(\s*)([\w.-]*)$/.exec(before);
  if (key) {
    const parent = enclosingPath(lines, line, key[1].length, false);
    return { kind: 'key', parent, prefix: key[2] };
  }
  return null;
}
