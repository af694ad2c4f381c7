/**
 * The JSON Schema of `*.loraxs.yaml` (loraxs.schema.json) and lookups into it by key path, for hover
 * (descriptions), completion (keys, enum values, defaults) and the parser's "did you mean" suggestions.
 */
import schemaJson from './loraxs.schema.json';
import type { KeyPath } from './yaml_positions';

/** The subset of JSON Schema draft-07 that loraxs.schema.json uses. */
export interface SchemaNode {
  type?: string | string[];
  description?: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  required?: string[];
  items?: SchemaNode;
  enum?: unknown[];
  oneOf?: SchemaNode[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

export const LORAXS_SCHEMA: SchemaNode & Record<string, unknown> = schemaJson as SchemaNode & Record<string, unknown>;

/** The schema of the value at a key path (array indices step into `items`), or null when none. */
export function schemaAt(keyPath: KeyPath): SchemaNode | null {
  let node: SchemaNode | null = LORAXS_SCHEMA;
  for (const seg of keyPath) {
    if (!node) return null;
    if (typeof seg === 'number') {
      node = node.items ?? node.oneOf?.find((s) => s.items)?.items ?? null;
    } else if (node.properties && seg in node.properties) {
      node = node.properties[seg];
    } else if (typeof node.additionalProperties === 'object') {
      node = node.additionalProperties;
    } else {
      return null;
    }
  }
  return node;
}

/** The keys a mapping at this path may hold (empty for free-form maps such as rank_pattern). */
export function keysAt(keyPath: KeyPath): string[] {
  return Object.keys(schemaAt(keyPath)?.properties ?? {});
}

/** Every section path that has named keys, top level first: [], ['data'], ['adapter'], ... */
export function sectionPaths(): string[][] {
  const out: string[][] = [];
  const walk = (node: SchemaNode, at: string[]): void => {
    if (!node.properties) return;
    out.push(at);
    for (const [k, child] of Object.entries(node.properties)) walk(child, [...at, k]);
  };
  walk(LORAXS_SCHEMA, []);
  return out;
}
