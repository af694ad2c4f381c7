/**
 * Which linear layers LoRA-XS adapts, and with which rank, matched as PEFT matches `target_modules` and
 * `rank_pattern`: a key matches a module when the module's name equals the key or ends with `.` + key
 * (so `output.dense` matches `roberta.encoder.layer.3.output.dense` but not `...attention.output.dense`'s
 * parent `attention.output`, and `dense` matches every `*.dense`).
 *
 * `rank_pattern` keys match the same way; when several match one module, the longest key wins (the most
 * specific), which is what PEFT's first-match rule gives for the usual ordering of specific keys first.
 */
import { LoraxsError, type SourcePlace } from '../errors';
import type { LinearModule } from '../models/types';

export interface ResolvedTarget {
  module: LinearModule;
  /** The longest target key that matched the module's name. */
  key: string;
  rank: number;
}

/** Whether `key` selects the module `name` (PEFT's rule: equal, or a suffix after a dot). */
export function keyMatches(name: string, key: string): boolean {
  return name === key || name.endsWith(`.${key}`);
}

/** The longest of `keys` that selects `name`, or undefined. */
export function longestMatch(name: string, keys: Iterable<string>): string | undefined {
  let best: string | undefined;
  for (const key of keys) if (keyMatches(name, key) && (best === undefined || key.length > best.length)) best = key;
  return best;
}

/** The rank of module `name`: the rank_pattern entry of its longest matching key, else `rank`. */
export function rankFor(name: string, rank: number, rankPattern: Record<string, number>): number {
  const key = longestMatch(name, Object.keys(rankPattern));
  return key === undefined ? rank : rankPattern[key];
}

/**
 * The adapted modules in model order, each with its rank.
 * Errors (LoraxsError at `where`): a target that matches no module (with the closest module-name
 * suffixes as suggestions), a rank_pattern key that matches no target module, a rank below 1 or above
 * min(out, in) of a module.
 */
export function resolveTargets(
  modules: LinearModule[],
  targets: string[],
  rank: number,
  rankPattern: Record<string, number>,
  where?: SourcePlace,
): ResolvedTarget[] {
  const at = (detail: string): SourcePlace | undefined => (where ? { ...where, detail } : undefined);
  if (targets.length === 0) throw new LoraxsError('adapter.targets is empty: name at least one module to adapt', at('adapter.targets'));
  checkRank(rank, 'adapter.rank', at('adapter.rank'));
  for (const [key, r] of Object.entries(rankPattern)) checkRank(r, `adapter.rank_pattern["${key}"]`, at(`adapter.rank_pattern.${key}`));

  for (const key of targets) {
    if (!modules.some((m) => keyMatches(m.name, key))) {
      const hint = closestSuffixes(key, modules.map((m) => m.name));
      throw new LoraxsError(
        `target "${key}" matches no linear layer of this model${hint.length ? `; did you mean ${hint.map((h) => `"${h}"`).join(', ')}?` : ''}`,
        at('adapter.targets'));
    }
  }
  const resolved: ResolvedTarget[] = [];
  for (const module of modules) {
    const key = longestMatch(module.name, targets);
    if (key === undefined) continue;
    const r = rankFor(module.name, rank, rankPattern);
    const limit = Math.min(module.outFeatures, module.inFeatures);
    if (r > limit) {
      const source = longestMatch(module.name, Object.keys(rankPattern));
      const which = source === undefined ? 'adapter.rank' : `adapter.rank_pattern["${source}"]`;
      throw new LoraxsError(
        `rank ${r} (${which}) exceeds min(out, in) = ${limit} of ${module.name} (${module.outFeatures} × ${module.inFeatures})`,
        at(source === undefined ? 'adapter.rank' : `adapter.rank_pattern.${source}`));
    }
    resolved.push({ module, key, rank: r });
  }
  for (const key of Object.keys(rankPattern)) {
    if (!resolved.some((t) => keyMatches(t.module.name, key))) {
      throw new LoraxsError(`adapter.rank_pattern key "${key}" matches none of the adapted modules`, at(`adapter.rank_pattern.${key}`));
    }
  }
  return resolved;
}

function checkRank(r: number, what: string, place: SourcePlace | undefined): void {
  if (!Number.isInteger(r) || r < 1) throw new LoraxsError(`${what} must be an integer ≥ 1, got ${r}`, place);
}

/** Up to three dot-suffixes of the module names closest (edit distance) to `key`. */
export function closestSuffixes(key: string, names: string[]): string[] {
  const suffixes = new Set<string>();
  for (const name of names) {
    const parts = name.split('.');
    // Suffixes of up to 3 segments, without the layer index.
    for (let len = 1; len <= Math.min(3, parts.length); len++) {
      const s = parts.slice(parts.length - len).join('.');
      if (!/(^|\.)\d+(\.|$)/.test(s)) suffixes.add(s);
    }
  }
  const scored = [...suffixes].map((s) => ({ s, d: editDistance(key, s) }));
  scored.sort((a, b) => a.d - b.d || a.s.length - b.s.length || (a.s < b.s ? -1 : 1));
  const limit = Math.max(3, Math.ceil(key.length / 2));
  return scored.filter((x) => x.d <= limit).slice(0, 3).map((x) => x.s);
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
