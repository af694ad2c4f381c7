/**
 * Seeds derived from the run seed and a purpose (data order of epoch e, dropout of update s, a module's
 * init), so each draw is a function of its place in the run and not of what was drawn before it.
 * FNV-1a over the parts' text; stable across platforms and versions.
 */
export function seedFor(seed: number, ...parts: Array<string | number>): number {
  let h = 0x811c9dc5;
  for (const ch of [String(seed), ...parts.map(String)].join('\u0000')) {
    h ^= ch.codePointAt(0)!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
