/**
 * The "module types" of an analysis: each linear layer belongs to the longest target key that selects it
 * (so `output.dense` and `attention.output.dense` stay apart, as in the paper's tables), and to the layer
 * index its name carries.
 */
import { LoraxsError, type SourcePlace } from '../errors';
import type { LinearModule } from '../models/types';
import { closestSuffixes, keyMatches, longestMatch } from '../loraxs/targets';

export interface ModuleGroup {
  /** The target key (module type), e.g. `query`, `attention.output.dense`. */
  type: string;
  /** Member modules in model order. */
  modules: Array<LinearModule & { layer: number | null }>;
}

/** The transformer layer index in a module name (`...layer.3.attention...` -> 3), or null. */
export function layerOf(name: string): number | null {
  const m = /(?:^|\.)(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Groups `modules` by the longest matching key of `types`, in the order of `types`. A key that matches no
 * module is a LoraxsError at `where` (with suggestions).
 */
export function groupModules(modules: LinearModule[], types: string[], where?: SourcePlace): ModuleGroup[] {
  const groups = new Map<string, ModuleGroup>(types.map((t) => [t, { type: t, modules: [] }]));
  for (const m of modules) {
    const key = longestMatch(m.name, types);
    if (key !== undefined) groups.get(key)!.modules.push({ ...m, layer: layerOf(m.name) });
  }
  for (const t of types) {
    if (groups.get(t)!.modules.length === 0) {
      const hint = modules.some((m) => keyMatches(m.name, t)) ? [] : closestSuffixes(t, modules.map((m) => m.name));
      throw new LoraxsError(`module type "${t}" matches no linear layer of this model` +
        `${hint.length ? `; did you mean ${hint.map((h) => `"${h}"`).join(', ')}?` : ''}`, where);
    }
  }
  return [...groups.values()];
}
