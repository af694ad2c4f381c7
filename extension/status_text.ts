/**
 * The compute backend as the status bar shows it (no VS Code API here, so node:test checks it): the engine's
 * (wasm with its threads, tensorflow (native)), or while a launch runs, torch with its processes and the
 * device its first update named.
 */
import type { StatusNotification } from '../sidecar/protocol';

export function backendText(s: StatusNotification.Params): { short: string; long: string } {
  if (!s.backend) return { short: '', long: 'unknown' };
  if (s.backend === 'torch') {
    const n = s.processes ?? 1;
    return {
      short: `torch ×${n}${s.device ? ` · ${s.device}` : ''}`,
      long: `PyTorch + Accelerate, ${n} process${n > 1 ? 'es' : ''}${s.device ? ` on ${s.device}` : ''}`,
    };
  }
  const name = s.backend === 'tensorflow' ? 'tensorflow (native)' : s.backend;
  return {
    short: `${name}${s.threads && s.threads > 1 ? ` ×${s.threads}` : ''}`,
    long: `${name}${s.threads ? ` (${s.threads} thread${s.threads > 1 ? 's' : ''})` : ''}`,
  };
}
