/**
 * The numbers of `loraxs params` as Markdown for hovers: LoRA-XS parameters per module type and in total,
 * LoRA and VeRA at the same rank, the base model's size, the adapter's bytes, the storage of a million
 * adapters, and the training-memory estimate.
 */
import type { ParamsReport } from '../records';
import { headDescription } from '../loraxs/param_counts';

const n = (x: number): string => x.toLocaleString('en-US');

/** Bytes in binary units: 1536 -> '1.5 KiB'. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n(bytes)} bytes` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

/** A ratio as text: 0.000123 -> '0.012%'. */
function percent(x: number): string {
  const p = 100 * x;
  return `${p >= 1 ? p.toFixed(2) : p.toPrecision(2)}%`;
}

/** Markdown text for an escaped table cell (module keys contain dots only, but stay safe). */
function cell(s: string): string {
  return s.replace(/[|\\`*_[\]<>]/g, (c) => `\\${c}`);
}

/** The full report; `alpha` adds the scale α/r line. */
export function paramsMarkdown(report: ParamsReport, opts: { rank: number; alpha: number }): string {
  const lines: string[] = [];
  lines.push(`**LoRA-XS: ${n(report.loraxs)} trainable parameters** in ${n(report.modules)} modules of ${cell(report.modelType)} ` +
    `(rank ${opts.rank}, α ${opts.alpha}, scale α/r = ${+(opts.alpha / opts.rank).toPrecision(4)})`);
  lines.push('');
  lines.push('| target | modules | out × in | rank | LoRA-XS | LoRA | VeRA |');
  lines.push('|---|--:|---|---|--:|--:|--:|');
  for (const [key, t] of Object.entries(report.perModuleType)) {
    const dims = t.dims.map(([o, i]) => `${o} × ${i}`).join(', ');
    lines.push(`| ${cell(key)} | ${t.count} | ${dims} | ${t.ranks.join(', ')} | ${n(t.loraxs)} | ${n(t.lora)} | ${n(t.vera)} |`);
  }
  lines.push(`| **total** | ${report.modules} | | | **${n(report.loraxs)}** | ${n(report.lora)} | ${n(report.vera)} |`);
  lines.push('');
  const vsLora = report.loraxs > 0 ? report.lora / report.loraxs : 0;
  const m = report.trainingMemory;
  if (report.headParams !== undefined) {
    lines.push(`- Head: ${n(report.headParams)} trainable parameters (${cell(headDescription(report))}); ` +
      `**${n(report.trainable ?? report.loraxs + report.headParams)} trainable in all**, as \`train\` counts them`);
  }
  if (report.pairMode) lines.push(`- Sentence pairs: pair mode **${report.pairMode}** (${report.pairMode === 'bi' ? 'each text embedded alone, then compared' : 'the two texts joined with separators'})`);
  lines.push(`- LoRA at the same rank trains ${n(report.lora)} (${vsLora.toFixed(1)}× as many), VeRA ${n(report.vera)}`);
  lines.push(`- Base model: ${n(report.baseParams)} parameters (from ${report.baseParamsFrom}); LoRA-XS trains ${percent(report.loraxs / Math.max(report.baseParams, 1))} of that`);
  lines.push(`- Adapter: ${n(report.adapterBytes)} bytes (float32 R); 1,000,000 adapters: ${formatBytes(report.adapterBytes * 1e6)}`);
  lines.push(`- Training memory, estimated at batch ${m.batchSize} × max_length ${m.maxLength}: **${formatBytes(m.totalBytes)}** ` +
    `(weights ${formatBytes(m.weightsBytes)}, frozen factors ${formatBytes(m.factorBytes)}, trainable + optimizer ${formatBytes(m.trainableStateBytes)}, activations ${formatBytes(m.activationBytes)})`);
  return lines.join('\n');
}
