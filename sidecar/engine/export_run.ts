/**
 * `loraxs export`: an adapter folder in another layout (formats in loraxs/export.ts). Loads only the
 * adapted modules' weights of the base model, to recompute (or take from the cache) the frozen factors.
 * `peft-lora` of an adapter whose base the engine cannot hold is written by trainer/adapter_tools.py.
 */
import * as path from 'node:path';
import { initBackend } from '../backend/choice';
import { openCheckpoint, loadWeights, checkpointFingerprint } from '../io/model_folder';
import { loadAdapter } from '../loraxs/adapter_files';
import { adapterFactors, checkBaseModel } from '../loraxs/factor_cache';
import { exportAdapter, EXPORT_FORMATS, type ExportFormat } from '../loraxs/export';
import type { FolderWriteOptions } from '../loraxs/folder_swap';
import type { EngineEvents } from '../records';
import { engineCannotHold } from './model_support';
import { runTrainerTool } from './trainer_tools';

export { EXPORT_FORMATS, type ExportFormat };

export interface ExportOptions {
  adapterDir: string;
  /** Base model folder; default: the path recorded in the adapter. */
  modelDir?: string;
  format: ExportFormat;
  outDir: string;
}

/** Exports and writes `opts.outDir` atomically with its marker (`write`: as for mergeRun). */
export async function exportRun(opts: ExportOptions, events?: EngineEvents, write: FolderWriteOptions = { writer: 'export' }): Promise<string> {
  const snapshot = loadAdapter(opts.adapterDir);
  const modelDir = opts.modelDir ?? snapshot.config.baseModel.path;
  // PEFT LoRA of an architecture the engine cannot hold (Conv1D layers need fan_in_fan_out): the trainer's Python.
  // The other formats need only the adapter's own files (its factors are inside).
  if (opts.format === 'peft-lora' && engineCannotHold(modelDir)) {
    return runTrainerTool('export-peft', { adapterDir: opts.adapterDir, modelDir, outDir: opts.outDir }, null, events, write);
  }
  await initBackend();
  const factors = snapshot.factors ?? (() => {
    const ckpt = openCheckpoint(modelDir);
    checkBaseModel(opts.adapterDir, snapshot, checkpointFingerprint(ckpt), modelDir);
    const weights = loadWeights(ckpt, snapshot.config.modules.map((m) => `${m.name}.weight`));
    try {
      return adapterFactors(opts.adapterDir, snapshot, weights, { onModule: (p) => events?.progress?.('factors', p.index + 1, p.total) });
    } finally {
      for (const t of weights.values()) t.dispose();
    }
  })();
  const files = exportAdapter(opts.outDir, opts.format, { snapshot, factors, baseModelPath: path.resolve(modelDir) }, write);
  events?.log?.(`wrote ${files.join(', ')} to ${opts.outDir}`);
  return path.resolve(opts.outDir);
}
