/**
 * The target keys a user can write for a model's modules (PEFT's `target_modules` semantics: a key
 * matches a module whose name equals it or ends in '.' + key), one key per kind of module, and the same
 * layer's name in the other family, for completion, lint and suggestions.
 */
import type { LinearModule } from '../models/types';
import { keyMatches } from './targets';

/** Module-name suffixes without layer numbers (`query`, `self.query`, `attention.self.query`): the keys a user can write. */
export function targetKeysOf(modules: readonly LinearModule[]): string[] {
  const keys = new Set<string>();
  for (const m of modules) {
    const parts = m.name.split('.');
    for (let i = parts.length - 1; i >= 0; i--) {
      if (/^\d+$/.test(parts[i])) break;
      keys.add(parts.slice(i).join('.'));
    }
  }
  return [...keys];
}

/**
 * One key per kind of module, the shortest that selects exactly the modules its full per-layer name
 * selects: BERT gives query, key, value, attention.output.dense, intermediate.dense, output.dense,
 * pooler.dense (`output.dense` also selects attention.output.dense, as PEFT does); Llama q_proj, ...
 */
export function moduleTypeKeys(modules: readonly LinearModule[]): string[] {
  const types: string[] = [];
  for (const m of modules) {
    // The name after the layer index (`attention.self.query`), or the last two parts (`pooler.dense`).
    const inLayer = /^.*?\.\d+\.(.+)$/.exec(m.name);
    const t = inLayer ? inLayer[1] : m.name.split('.').slice(-2).join('.');
    if (!types.includes(t)) types.push(t);
  }
  const selected = (key: string): string => types.filter((t) => keyMatches(t, key)).join(',');
  return types.map((t) => {
    const parts = t.split('.');
    for (let i = parts.length - 1; i > 0; i--) {
      const suffix = parts.slice(i).join('.');
      if (selected(suffix) === selected(t)) return suffix;
    }
    return t;
  });
}

/** The same layer in the other family's names, for configs carried from an encoder to a decoder or back. */
export const OTHER_FAMILY_KEYS: Record<string, string> = {
  q_proj: 'query', k_proj: 'key', v_proj: 'value', o_proj: 'attention.output.dense',
  gate_proj: 'intermediate.dense', up_proj: 'intermediate.dense', down_proj: 'output.dense',
  query: 'q_proj', key: 'k_proj', value: 'v_proj', 'attention.output.dense': 'o_proj',
  'intermediate.dense': 'up_proj', 'output.dense': 'down_proj', dense: 'o_proj',
};
