/**
 * `loraxs merge` and `loraxs export --format peft-lora` for adapters whose base model the engine cannot hold
 * (engine/model_support.ts): trainer/adapter_tools.py in the trainer's Python (--python / compute.python /
 * .venv-trainer, as `loraxs launch`), writing into the temporary folder of writeFolderAtomically, so the
 * output pre-flight, the marker and the atomic swap are the engine's. Its error is one line.
 */
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { RunConfig } from '../config/types';
import { LoraxsError } from '../errors';
import { writeFolderAtomically, type FolderWriteOptions } from '../loraxs/folder_swap';
import type { EngineEvents } from '../records';
import { trainerPython, trainerRoot } from './launch';

export type TrainerTool = 'merge' | 'export-peft';

/** Runs adapter_tools.py COMMAND into `outDir` (atomically); returns the absolute output folder. */
export function runTrainerTool(tool: TrainerTool, io: { adapterDir: string; modelDir: string; outDir: string }, config: RunConfig | null,
  events: EngineEvents | undefined, write: FolderWriteOptions): string {
  const root = trainerRoot();
  const python = trainerPython(config, {}, root);
  const script = path.join(root, 'trainer', 'adapter_tools.py');
  events?.log?.(`the engine does not hold this model's architecture: ${tool} by ${python} ${path.relative(root, script)}`);
  writeFolderAtomically(io.outDir, (tmp) => {
    const r = spawnSync(python, [script, tool, '--adapter', path.resolve(io.adapterDir), '--model', path.resolve(io.modelDir), '--out', tmp], {
      encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (r.error) {
      throw new LoraxsError(`could not run ${python}: ${r.error.message} (install the trainer: ${python} -m pip install -r trainer/requirements.txt, or set compute.python)`);
    }
    const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim());
    let message: string | undefined;
    for (const line of lines) {
      const m = /^\{"loraxs_error":/.test(line) ? (JSON.parse(line) as { loraxs_error: { message: string } }).loraxs_error.message : undefined;
      if (m !== undefined) message = m;
      else events?.log?.(line);
    }
    if (r.status !== 0) throw new LoraxsError(`${tool} in ${python} failed (exit ${r.status}): ${message ?? lines.at(-1) ?? 'no output'}`);
  }, write);
  return path.resolve(io.outDir);
}
