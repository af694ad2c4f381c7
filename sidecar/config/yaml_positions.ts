/**
 * Source positions in a YAML document: from a key path such as ['adapter', 'targets', 2] to the exact
 * range of that key or value, in LSP form (0-based line, 0-based UTF-16 character; the `yaml` package's
 * offsets are JavaScript string indices, i.e. UTF-16 units, so they convert directly).
 */
import { Document, LineCounter, isMap, isPair, isScalar, isSeq, parseDocument } from 'yaml';
import type { Node as YamlNode } from 'yaml';

export interface Position {
  /** 0-based line. */
  line: number;
  /** 0-based UTF-16 column. */
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export type KeyPath = ReadonlyArray<string | number>;

/** A parsed document with the line table needed to turn offsets into positions. */
export interface PositionedDocument {
  doc: Document.Parsed;
  lines: LineCounter;
  text: string;
}

export function parseWithPositions(text: string): PositionedDocument {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, keepSourceTokens: false });
  return { doc, lines, text };
}

/** LSP position of a string offset. */
export function positionAt(pd: PositionedDocument, offset: number): Position {
  const clamped = Math.max(0, Math.min(offset, pd.text.length));
  const { line, col } = pd.lines.linePos(clamped);
  return { line: line - 1, character: col - 1 };
}

export function rangeOfOffsets(pd: PositionedDocument, start: number, end: number): Range {
  return { start: positionAt(pd, start), end: positionAt(pd, Math.max(start, end)) };
}

/** The range of a node's value (without trailing comments or whitespace). */
function nodeRange(pd: PositionedDocument, node: YamlNode | null | undefined): Range | null {
  if (!node || !node.range) return null;
  return rangeOfOffsets(pd, node.range[0], node.range[1]);
}

/** The first line of the document (or an empty range at 0:0), for problems that belong to no key. */
export function documentStartRange(pd: PositionedDocument): Range {
  const firstLine = pd.text.split(/\r?\n/, 1)[0] ?? '';
  return { start: { line: 0, character: 0 }, end: { line: 0, character: firstLine.length } };
}

interface Located {
  /** How many segments of the path were found. */
  depth: number;
  /** Key node of the deepest map entry found (null for sequence items and the root). */
  key: YamlNode | null;
  /** Value node of the deepest segment found. */
  value: YamlNode | null;
}

/** Follows the path as far as the document allows. */
function locate(pd: PositionedDocument, keyPath: KeyPath): Located {
  let current: unknown = pd.doc.contents;
  let found: Located = { depth: 0, key: null, value: (current as YamlNode) ?? null };
  for (let i = 0; i < keyPath.length; i++) {
    const seg = keyPath[i];
    if (isMap(current)) {
      const pair = current.items.find(
        (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
      );
      if (!pair) break;
      found = { depth: i + 1, key: pair.key as YamlNode, value: (pair.value as YamlNode) ?? null };
      current = pair.value;
    } else if (isSeq(current) && typeof seg === 'number' && seg >= 0 && seg < current.items.length) {
      const item = current.items[seg] as YamlNode;
      found = { depth: i + 1, key: null, value: item };
      current = item;
    } else {
      break;
    }
  }
  return found;
}

/**
 * Range of the key at `keyPath` (for a sequence item: the item), or of the deepest ancestor that exists
 * when the path goes further than the document. `exact` is false in that case.
 */
export function locateKey(pd: PositionedDocument, keyPath: KeyPath): { range: Range; exact: boolean } {
  const at = locate(pd, keyPath);
  const range = nodeRange(pd, at.key ?? at.value) ?? documentStartRange(pd);
  return { range, exact: at.depth === keyPath.length && keyPath.length > 0 };
}

/**
 * Range of the value at `keyPath`; when the key has no value (`lr:`), the key's range; when the path
 * goes further than the document, the deepest ancestor's key.
 */
export function locateValue(pd: PositionedDocument, keyPath: KeyPath): { range: Range; exact: boolean } {
  const at = locate(pd, keyPath);
  if (at.depth < keyPath.length) return locateKey(pd, keyPath.slice(0, at.depth));
  // An empty value (`lr:`) has a zero-length range: point at the key instead.
  const value = at.value?.range && at.value.range[1] > at.value.range[0] ? at.value : null;
  const range = nodeRange(pd, value) ?? nodeRange(pd, at.key) ?? documentStartRange(pd);
  return { range, exact: true };
}

/**
 * Range of the key at a path such as ['adapter', 'targets', 2] (a sequence index gives the item), for
 * diagnostics computed elsewhere (engine, language server). Null when the path is not in the text.
 */
export function keyRange(text: string, keyPath: KeyPath): Range | null {
  const pd = parseWithPositions(text);
  const { range, exact } = locateKey(pd, keyPath);
  return exact ? range : null;
}

/** Range of the value at a key path; null when the path is not in the text or has no value. */
export function valueRange(text: string, keyPath: KeyPath): Range | null {
  const pd = parseWithPositions(text);
  const at = locate(pd, keyPath);
  if (at.depth !== keyPath.length) return null;
  return nodeRange(pd, at.value);
}

/** `adapter.rank_pattern['output.dense']`, `adapter.targets[2]`: a key path as users read it. */
export function formatKeyPath(keyPath: KeyPath): string {
  let out = '';
  for (const seg of keyPath) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `['${seg}']`;
  }
  return out || '(top level)';
}
