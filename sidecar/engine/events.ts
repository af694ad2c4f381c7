/**
 * How the engine reports what it does, without knowing who listens: the CLI draws progress on stderr,
 * the sidecar forwards the same events to the extension as notifications.
 */
export interface StepRecord {
  /** Optimizer update number, from 1. */
  step: number;
  /** Epoch, from 1. */
  epoch: number;
  /** That batch's training loss before the update (mean over its accumulated micro-batches). */
  loss: number;
  /** Learning rate used for this update (the adapter's; the head's is head_lr times the same multiplier). */
  lr: number;
  tokens_per_s: number;
  grad_norm?: number;
  /** Updates in the whole run, for ETA. */
  total_steps?: number;
}

export interface EvalRecord {
  step: number;
  epoch: number;
  eval: Record<string, number>;
}

export interface EngineEvents {
  log?(message: string): void;
  /** A long phase (loading, SVD, evaluation) advanced: done of total units. */
  progress?(phase: string, done: number, total: number): void;
  step?(record: StepRecord): void;
  eval?(record: EvalRecord, best: boolean): void;
}

/** Events written to stderr: a one-line progress bar on a terminal, sparse lines otherwise. */
export function stderrEvents(opts: { quiet?: boolean } = {}): EngineEvents {
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  const write = (s: string): void => {
    if (!opts.quiet) process.stderr.write(s);
  };
  return {
    log: (m) => write((tty ? '\r\x1b[K' : '') + m + '\n'),
    progress: (phase, done, total) => {
      const now = Date.now();
      if (tty) {
        const width = 30;
        const filled = Math.round((width * done) / Math.max(total, 1));
        write(`\r\x1b[K${phase} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
        if (done >= total) write('\n');
      } else if (done >= total || now - lastLine > 5000) {
        lastLine = now;
        write(`${phase}: ${done}/${total}\n`);
      }
    },
    step: (r) => {
      const now = Date.now();
      const line = `step ${r.step}${r.total_steps ? `/${r.total_steps}` : ''} epoch ${r.epoch} loss ${r.loss.toFixed(4)} lr ${r.lr.toExponential(2)} ${Math.round(r.tokens_per_s)} tok/s`;
      if (tty) write(`\r\x1b[K${line}`);
      else if (now - lastLine > 5000 || r.step === r.total_steps) {
        lastLine = now;
        write(line + '\n');
      }
    },
    eval: (r, best) => {
      const metrics = Object.entries(r.eval).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(' ');
      write(`${tty ? '\r\x1b[K' : ''}eval step ${r.step} epoch ${r.epoch}: ${metrics}${best ? ' (best)' : ''}\n`);
    },
  };
}
