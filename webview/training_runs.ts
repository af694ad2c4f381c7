/**
 * The training panel's state and how each message changes it, with no DOM: the page (training_panel.ts)
 * draws what this holds, and tests apply messages to it directly.
 *
 * The best evaluation of a run is the one the engine says: live, the `best` flag of its eval events;
 * from metrics.jsonl, the step of the last `best` line (the engine writes one whenever an evaluation
 * becomes the best so far, ranked by the task's metric: accuracy, pearson, loss).
 */
import type { TrainRequest, TrainingPanelUpdate } from '../sidecar/protocol';
import { isBestRecord, isEvalRecord, isStepRecord } from '../sidecar/records';
import type { EvalRecord, MetricsRecord, StepRecord } from '../sidecar/records';

export interface EvalView {
  record: EvalRecord;
  best: boolean;
}

export interface RunView {
  runId: string;
  title: string;
  output?: string;
  steps: StepRecord[];
  evals: EvalView[];
  /** Arrival time (ms) of the first and the latest update while live, for the ETA. */
  firstStepAt?: number;
  lastStepAt?: number;
  phase?: string;
  summary?: TrainRequest.Result;
  error?: string;
}

export interface PanelState {
  runs: RunView[];
}


export function emptyState(): PanelState {
  return { runs: [] };
}

function runOf(state: PanelState, runId: string, title?: string): RunView {
  let run = state.runs.find((r) => r.runId === runId);
  if (!run) {
    run = { runId, title: title ?? runId, steps: [], evals: [] };
    state.runs.push(run);
  }
  if (title) run.title = title;
  return run;
}

/**
 * Elapsed time and ETA (seconds) of a run's latest update: the engine's own `elapsed_s` / `eta_s` when
 * the update line has them (also after a reload from metrics.jsonl), else from the arrival times of live
 * updates (mean time per update × updates left); null before any update. `eta_s` is 0 at the last update.
 */
export function runTiming(run: RunView): { elapsed_s: number | null; eta_s: number | null } | null {
  const last = run.steps.at(-1);
  if (!last) return null;
  if (last.elapsed_s !== undefined) return { elapsed_s: last.elapsed_s, eta_s: last.eta_s ?? null };
  if (!last.total_steps || run.firstStepAt === undefined || run.lastStepAt === undefined || run.steps.length < 2) return { elapsed_s: null, eta_s: null };
  const perStep = (run.lastStepAt - run.firstStepAt) / (run.steps.length - 1) / 1000;
  return { elapsed_s: (run.lastStepAt - run.firstStepAt) / 1000, eta_s: perStep * Math.max(last.total_steps - last.step, 0) };
}

/** The evaluations of metrics.jsonl, the one the last `best` line names marked best. */
export function evalsFromRecords(records: MetricsRecord[]): EvalView[] {
  const bestStep = records.filter(isBestRecord).at(-1)?.step;
  return records.filter(isEvalRecord).map((record) => ({ record, best: !record.baseline && record.step === bestStep }));
}

/** Applies one message from the extension to the state; `now` (ms) times live updates for the ETA. */
export function applyUpdate(state: PanelState, m: TrainingPanelUpdate, now: number): void {
  switch (m.type) {
    case 'reset': {
      const run = runOf(state, m.runId, m.title);
      run.steps = [];
      run.evals = [];
      run.summary = undefined;
      run.error = undefined;
      run.phase = 'starting';
      if (m.output) run.output = m.output;
      run.firstStepAt = run.lastStepAt = undefined;
      break;
    }
    case 'load': {
      const run = runOf(state, m.runId, m.title);
      run.output = m.output;
      run.steps = m.records.filter(isStepRecord);
      run.evals = evalsFromRecords(m.records);
      run.phase = undefined;
      break;
    }
    case 'progress': {
      const p = m.progress;
      const run = runOf(state, p.runId);
      if (p.kind === 'step') {
        run.firstStepAt ??= now;
        run.lastStepAt = now;
        // A resumed run, or records already loaded from metrics.jsonl, may overlap: keep the newest.
        while (run.steps.length && run.steps[run.steps.length - 1].step >= p.record.step) run.steps.pop();
        run.steps.push(p.record);
        run.phase = undefined;
      } else if (p.kind === 'eval') {
        if (p.best) for (const e of run.evals) e.best = false;
        run.evals = run.evals.filter((e) => e.record.step !== p.record.step);
        run.evals.push({ record: p.record, best: p.best });
      } else if (p.kind === 'phase') {
        run.phase = `${p.phase} ${p.done}/${p.total}`;
      }
      break;
    }
    case 'finished': {
      const run = runOf(state, m.runId);
      run.summary = m.result;
      run.output = m.result.output;
      run.phase = undefined;
      break;
    }
    case 'failed': {
      const run = runOf(state, m.runId);
      run.error = m.message;
      run.phase = undefined;
      break;
    }
  }
}
