/**
 * The engine's stages report through EngineEvents callbacks (records.ts); a job's listener takes one
 * JobEvent at a time. This turns the one into the other, so every stage's progress reaches the CLI's
 * stderr and the sidecar's notifications as the same JobEvent values.
 */
import type { EngineEvents, JobEvent } from '../records';

export function eventCallbacks(emit: (e: JobEvent) => void): Required<EngineEvents> {
  return {
    log: (message) => emit({ kind: 'log', message }),
    progress: (phase, done, total) => emit({ kind: 'phase', phase, done, total }),
    step: (record) => emit({ kind: 'step', record }),
    eval: (record, best) => emit({ kind: 'eval', record, best }),
    row: (row) => emit({ kind: 'row', row }),
    run: (run) => emit({ kind: 'run', run }),
  };
}
