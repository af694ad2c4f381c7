/**
 * How the CLI shows a job's events on stderr: a one-line progress bar on a terminal, sparse lines
 * otherwise (a log file or CI). Results go to stdout elsewhere.
 */
import type { EngineEvents, JobEvent } from '../records';
import { eventCallbacks } from '../engine/events';

/** Seconds as `42s`, `3m05s`, `1h02m`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A listener that draws JobEvents on stderr. */
export function stderrProgress(opts: { quiet?: boolean } = {}): (e: JobEvent) => void {
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  const write = (s: string): void => {
    if (!opts.quiet) process.stderr.write(s);
  };
  return (e) => {
    const now = Date.now();
    switch (e.kind) {
      case 'log':
        write((tty ? '\r\x1b[K' : '') + e.message + '\n');
        break;
      case 'phase':
        if (tty) {
          const width = 30;
          const filled = Math.round((width * e.done) / Math.max(e.total, 1));
          write(`\r\x1b[K${e.phase} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${e.done}/${e.total}`);
          if (e.done >= e.total) write('\n');
        } else if (e.done >= e.total || now - lastLine > 5000) {
          lastLine = now;
          write(`${e.phase}: ${e.done}/${e.total}\n`);
        }
        break;
      case 'step': {
        const r = e.record;
        const time = r.elapsed_s !== undefined ? ` ${formatDuration(r.elapsed_s)} elapsed${r.eta_s !== undefined && r.step !== r.total_steps ? `, ETA ${formatDuration(r.eta_s)}` : ''}` : '';
        const line = `step ${r.step}${r.total_steps ? `/${r.total_steps}` : ''} epoch ${r.epoch} loss ${r.loss.toFixed(4)} lr ${r.lr.toExponential(2)} ${Math.round(r.tokens_per_s)} tok/s${time}`;
        if (tty) write(`\r\x1b[K${line}`);
        else if (now - lastLine > 5000 || r.step === r.total_steps) {
          lastLine = now;
          write(line + '\n');
        }
        break;
      }
      case 'eval': {
        const metrics = Object.entries(e.record.eval).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(' ');
        write(`${tty ? '\r\x1b[K' : ''}eval step ${e.record.step} epoch ${e.record.epoch}: ${metrics}${e.best ? ' (best)' : ''}\n`);
        break;
      }
      case 'row':
      case 'run':
        break;
    }
  };
}

/** The same, as engine callbacks, for the commands that call an engine stage directly (eval, predict, demo). */
export function stderrEvents(opts: { quiet?: boolean } = {}): EngineEvents {
  return eventCallbacks(stderrProgress(opts));
}
