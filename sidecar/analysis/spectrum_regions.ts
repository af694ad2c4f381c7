/**
 * Which singular directions an ablation keeps: `k = round(f · count)` of them, the first k (top), the last
 * k (bottom), or k starting at ⌊(count − k) / 2⌋ (middle), as in appendices D and E of the LoRA-XS paper.
 */
import type { Region } from '../records';
export type { Region };

export const REGIONS: readonly Region[] = ['top', 'middle', 'bottom'];

/** A half-open index range [start, start + count) of singular directions. */
export interface KeptRange {
  start: number;
  count: number;
}

/**
 * The directions kept out of `total` (ordered by descending singular value) for a fraction in [0, 1].
 * @example keptRange('middle', 10, 0.2) -> { start: 4, count: 2 }
 */
export function keptRange(region: Region, total: number, fraction: number): KeptRange {
  if (!(fraction >= 0 && fraction <= 1)) throw new Error(`internal error: fraction must be in [0, 1], got ${fraction}`);
  const count = Math.min(total, Math.round(fraction * total));
  const start = region === 'top' ? 0 : region === 'bottom' ? total - count : Math.floor((total - count) / 2);
  return { start, count };
}
