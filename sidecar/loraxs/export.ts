/**
 * Exporting an adapter for other tools (`loraxs export --format F`):
 *
 * - `peft-lora`: a standard PEFT LoRA folder. ΔW = scale · B R A is refactored as lora_B · lora_A with
 *   lora_B = B = U_r (out × r) and lora_A = scale · R A = (α/r) · R Σ_r V_rᵀ (r × in), and lora_alpha = r so
 *   PEFT's scaling (lora_alpha / r) is 1. Per-module ranks go to `rank_pattern` / `alpha_pattern`.
 *   Tensors are named `base_model.model.<module>.lora_{A,B}.weight`; the task head is saved the way
 *   PEFT's get_peft_model_state_dict saves `modules_to_save` (`base_model.model.classifier.dense.weight`:
 *   the wrapper's `modules_to_save.default.` is dropped), with the head's top module in `modules_to_save`.
 * - `loraxs-official`: the layout of the paper authors' code (PEFT LoRA + a latent mapping):
 *   `lora_A` = A (Σ_r V_rᵀ), `lora_B` = B (U_r), `base_model.model.<module>_lora_latent_mapping.weight` = R
 *   (their `default_lora_latent_mapping` after PEFT strips `.default`), lora_alpha as trained, and a
 *   README saying plain PEFT would ignore R and apply a wrong update.
 * - `loraxs-factors`: the native adapter plus factors.safetensors, so it loads on any machine without
 *   recomputing (and re-checking) the SVD.
 *
 * Every folder is written atomically (folder_swap.ts); the job runner passes `write` so the folder gets its
 * marker (`.loraxs-output`) and replaces only a folder LoRA-XS wrote.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../errors';
import { encodeSafetensors, type TensorToWrite } from '../io/safetensors';
import { saveAdapter, type AdapterSnapshot } from './adapter_files';
import { writeFolderAtomically, type FolderWriteOptions } from './folder_swap';
import type { Factors } from './init';
import { keyMatches } from './targets';

import { EXPORT_FORMATS, type ExportFormat } from '../records';
export { EXPORT_FORMATS, type ExportFormat };

export interface ExportInput {
  snapshot: AdapterSnapshot;
  /** The frozen factors of every module (adapterFactors()). */
  factors: Map<string, Factors>;
  /** base_model_name_or_path (default: the path recorded in the adapter). */
  baseModelPath?: string;
}

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

/** PEFT's task_type for our task. */
export function peftTaskType(task: AdapterSnapshot['config']['task']): 'SEQ_CLS' | 'CAUSAL_LM' {
  return task === 'causal-lm' ? 'CAUSAL_LM' : 'SEQ_CLS';
}

/** The head's top-level modules for `modules_to_save` (`classifier`, `score`). */
export function modulesToSave(head: Map<string, unknown>): string[] {
  const out = new Set<string>();
  for (const name of head.keys()) out.add(name.split('.')[0]);
  return [...out];
}

/**
 * target_modules for PEFT: the configured keys, unless one of them would also select a head module (PEFT
 * matches every module of the task model, e.g. `dense` would catch `classifier.dense`); then the full
 * names of the adapted modules.
 */
export function peftTargetModules(snap: AdapterSnapshot): string[] {
  const headModules = [...snap.head.keys()].map((n) => n.split('.').slice(0, -1).join('.'));
  const clash = snap.config.targets.some((key) => headModules.some((h) => keyMatches(h, key)));
  return clash ? snap.config.modules.map((m) => m.name) : [...snap.config.targets];
}

/**
 * A rank_pattern key that selects exactly one module in every PEFT version: the name without its first
 * segment, dots escaped (old PEFT matches `.*\.{key}$`, new `(.*\.)?({key})$`).
 */
export function peftPatternKey(moduleName: string): string {
  const parts = moduleName.split('.');
  const tail = parts.length > 1 ? parts.slice(1) : parts;
  return tail.join('\\.');
}

/** (r × r) · (r × in) in float64, times `scale`, as float32. */
function scaledProduct(R: Float32Array, A: Float32Array, r: number, n: number, scale: number): Float32Array {
  const out = new Float32Array(r * n);
  const row = new Float64Array(n);
  for (let i = 0; i < r; i++) {
    row.fill(0);
    for (let t = 0; t < r; t++) {
      const v = R[i * r + t];
      if (v === 0) continue;
      for (let j = 0; j < n; j++) row[j] += v * A[t * n + j];
    }
    for (let j = 0; j < n; j++) out[i * n + j] = row[j] * scale;
  }
  return out;
}

function headTensors(snap: AdapterSnapshot): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  for (const [name, t] of snap.head) out.set(`base_model.model.${name}`, { shape: t.shape, data: t.data });
  return out;
}

/** adapter_model.safetensors of `peft-lora`, by tensor name. */
export function peftLoraTensors(input: ExportInput): Map<string, NamedTensor> {
  const { snapshot: snap, factors } = input;
  const out = new Map<string, NamedTensor>();
  for (const m of snap.config.modules) {
    const f = factors.get(m.name);
    const R = snap.R.get(m.name);
    assert(f && R, () => `factors or R of ${m.name} missing`);
    const scale = snap.config.alpha / m.rank;
    out.set(`base_model.model.${m.name}.lora_A.weight`, { shape: [m.rank, m.inFeatures], data: scaledProduct(R, f.A, m.rank, m.inFeatures, scale) });
    out.set(`base_model.model.${m.name}.lora_B.weight`, { shape: [m.outFeatures, m.rank], data: f.B });
  }
  for (const [k, v] of headTensors(snap)) out.set(k, v);
  return out;
}

/** adapter_model.safetensors of `loraxs-official`, by tensor name. */
export function officialTensors(input: ExportInput): Map<string, NamedTensor> {
  const { snapshot: snap, factors } = input;
  const out = new Map<string, NamedTensor>();
  for (const m of snap.config.modules) {
    const f = factors.get(m.name);
    const R = snap.R.get(m.name);
    assert(f && R, () => `factors or R of ${m.name} missing`);
    out.set(`base_model.model.${m.name}.lora_A.weight`, { shape: [m.rank, m.inFeatures], data: f.A });
    out.set(`base_model.model.${m.name}.lora_B.weight`, { shape: [m.outFeatures, m.rank], data: f.B });
    out.set(`base_model.model.${m.name}_lora_latent_mapping.weight`, { shape: [m.rank, m.rank], data: R });
  }
  for (const [k, v] of headTensors(snap)) out.set(k, v);
  return out;
}

/** adapter_config.json for either LoRA layout. */
export function peftAdapterConfig(input: ExportInput, format: 'peft-lora' | 'loraxs-official'): Record<string, unknown> {
  const c = input.snapshot.config;
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const m of c.modules) {
    if (m.rank === c.rank) continue;
    rankPattern[peftPatternKey(m.name)] = m.rank;
    // peft-lora: lora_alpha = r per module (scaling 1); official: α/r with the module's own r.
    if (format === 'peft-lora') alphaPattern[peftPatternKey(m.name)] = m.rank;
  }
  const head = modulesToSave(input.snapshot.head);
  return {
    peft_type: 'LORA',
    task_type: peftTaskType(c.task),
    base_model_name_or_path: input.baseModelPath ?? c.baseModel.path,
    r: c.rank,
    lora_alpha: format === 'peft-lora' ? c.rank : c.alpha,
    lora_dropout: 0,
    target_modules: peftTargetModules(input.snapshot),
    bias: 'none',
    use_rslora: false,
    use_dora: false,
    fan_in_fan_out: false,
    init_lora_weights: true,
    modules_to_save: head.length ? head : null,
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    inference_mode: true,
    revision: null,
  };
}

function tensorsToWrite(tensors: Map<string, NamedTensor>): TensorToWrite[] {
  return [...tensors].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data }));
}

function officialReadme(input: ExportInput): string {
  const c = input.snapshot.config;
  return `# LoRA-XS adapter (layout of the paper authors' code)

Exported by LoRA-XS Studio ${c.engineVersion} from an adapter trained on \`${c.baseModel.path}\`
(init \`${c.init}\`, rank ${c.rank}${Object.keys(c.rankPattern).length ? ' with a rank_pattern' : ''}, alpha ${c.alpha}).

For each adapted module the update is

    ΔW = (lora_alpha / r) · lora_B · R · lora_A

with \`lora_A\` = Σ_r V_rᵀ (r × in), \`lora_B\` = U_r (out × r) and R = \`<module>_lora_latent_mapping.weight\`
(r × r), as in https://github.com/MohammadrezaBanaei/LoRA-XS (utils/initialization_utils.py).

**Warning: plain PEFT cannot load this folder correctly.** \`PeftModel.from_pretrained\` would ignore the
\`lora_latent_mapping\` tensors and apply (lora_alpha / r) · lora_B · lora_A, a wrong update. Load it with the
authors' code (\`find_and_initialize\`, then load the state dict with \`_lora_latent\` renamed to
\`.default_lora_latent\`), or export with \`--format peft-lora\` for a folder plain PEFT applies exactly.
${Object.keys(c.rankPattern).length ? '\nThis adapter uses per-module ranks (rank_pattern); the authors\' code assumes one rank for all modules.\n' : ''}`;
}

/** Writes the export folder `outDir` in `format`; returns the files written (the marker aside). */
export function exportAdapter(outDir: string, format: ExportFormat, input: ExportInput, write: FolderWriteOptions = {}): string[] {
  if (format === 'loraxs-factors') {
    let written: string[] = [];
    writeFolderAtomically(outDir, (tmp) => {
      saveAdapter(tmp, { ...input.snapshot, factors: input.factors });
      written = fs.readdirSync(tmp).sort();
    }, write);
    return written;
  }
  const tensors = format === 'peft-lora' ? peftLoraTensors(input) : officialTensors(input);
  const config = peftAdapterConfig(input, format);
  const files = ['adapter_config.json', 'adapter_model.safetensors'];
  writeFolderAtomically(outDir, (tmp) => {
    fs.writeFileSync(path.join(tmp, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
    fs.writeFileSync(path.join(tmp, 'adapter_model.safetensors'), encodeSafetensors(tensorsToWrite(tensors), { format: 'pt' }));
    if (format === 'loraxs-official') {
      fs.writeFileSync(path.join(tmp, 'README.md'), officialReadme(input));
      files.push('README.md');
    }
  }, write);
  return files;
}
