/**
 * The training panel's browser side (bundled to dist/webview/training_panel.js with Chart.js): loss and
 * learning-rate curves per update for every run (overlaid), validation metrics per evaluation with the
 * best marked, throughput and ETA of a live run, and each finished run's summary.
 *
 * State lives in `vscode.setState`, so the panel survives being hidden (the page is rebuilt from it) and
 * a window reload (the serializer hands the state back; the extension then reloads metrics.jsonl).
 * Everything from configs, models and data is set with textContent, never parsed as HTML.
 */
import type { TrainRequest, TrainingPanelRequest, TrainingPanelUpdate } from '../sidecar/protocol';
import { applyUpdate, emptyState, runTiming, type PanelState, type RunView } from './training_runs';
import { Chart, PALETTE, cssVar, el, vscodeApi } from './panel_kit';
import './training_panel.css';
import type { StepRecord } from '../sidecar/records';

const vscode = vscodeApi<TrainingPanelRequest, PanelState>();
const state: PanelState = vscode.getState() ?? emptyState();

// ---------------------------------------------------------------------------------------------------
// Drawing

function lineChart(canvas: HTMLCanvasElement, yTitle: string): Chart<'line', Array<{ x: number; y: number }>> {
  const fg = cssVar('--vscode-foreground', '#ccc');
  const grid = cssVar('--vscode-editorWidget-border', 'rgba(128,128,128,0.3)');
  return new Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: 'nearest', intersect: false },
      plugins: { legend: { labels: { color: fg, boxWidth: 12 } } },
      scales: {
        x: { type: 'linear', title: { display: true, text: 'step', color: fg }, ticks: { color: fg }, grid: { color: grid } },
        y: { type: 'linear', title: { display: true, text: yTitle, color: fg }, ticks: { color: fg }, grid: { color: grid } },
      },
    },
  });
}

const lossCanvas = document.getElementById('loss-chart') as HTMLCanvasElement;
const lrCanvas = document.getElementById('lr-chart') as HTMLCanvasElement;
const lossChart = lineChart(lossCanvas, 'training loss');
const lrChart = lineChart(lrCanvas, 'learning rate');
const runsBox = document.getElementById('runs') as HTMLElement;
const emptyBox = document.getElementById('empty') as HTMLElement;

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toFixed(4);
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** Throughput, elapsed time and ETA of a live run (training_runs.ts `runTiming`). */
function liveLine(run: RunView): string | null {
  const last = run.steps.at(-1);
  if (!last || run.summary || run.error) return null;
  const parts = [`step ${last.step}${last.total_steps ? ` / ${last.total_steps}` : ''}`, `${Math.round(last.tokens_per_s).toLocaleString('en-US')} tokens/s`];
  // A `loraxs launch` run (PyTorch + Accelerate) names its processes and their device.
  if (last.processes) parts.push(`torch ×${last.processes}${last.device ? ` on ${last.device}` : ''}`);
  const timing = runTiming(run);
  if (timing?.elapsed_s != null) parts.push(`${duration(timing.elapsed_s)} elapsed`);
  if (timing?.eta_s != null && last.total_steps) parts.push(`ETA ${duration(timing.eta_s)}`);
  return parts.join(' · ');
}

function evalTable(run: RunView): HTMLTableElement {
  const table = el('table', { cls: 'evals' });
  const keys = [...new Set(run.evals.flatMap((e) => Object.keys(e.record.eval)))];
  const head = el('tr');
  for (const h of ['', 'step', 'epoch', ...keys]) head.append(el('th', { text: h }));
  table.append(head);
  for (const e of run.evals) {
    const tr = el('tr', { cls: e.best ? 'best' : undefined });
    tr.append(el('td', { text: e.best ? '★ best' : e.record.step === 0 ? 'baseline' : '' }), el('td', { text: String(e.record.step) }), el('td', { text: String(e.record.epoch) }));
    for (const k of keys) tr.append(el('td', { text: k in e.record.eval ? fmt(e.record.eval[k]) : '' }));
    table.append(tr);
  }
  return table;
}

function summaryBox(s: TrainRequest.Result): HTMLElement {
  const box = el('div', { cls: 'summary' });
  box.dataset.finalMetric = s.best ? Object.entries(s.best.eval).map(([k, v]) => `${k}=${v}`).join(',') : '';
  box.append(el('h3', { text: s.cancelled ? 'Cancelled (checkpoint saved: Resume Training continues it)' : 'Finished' }));
  const rows: Array<[string, string]> = [
    ['updates', `${s.steps.toLocaleString('en-US')} of ${s.totalSteps.toLocaleString('en-US')}`],
    ['time', duration(s.seconds)],
    ['trainable parameters', `${s.trainableParams.toLocaleString('en-US')} (LoRA-XS R: ${s.adapterParams.toLocaleString('en-US')})`],
    ['adapter size', bytes(s.adapterBytes)],
  ];
  if (s.best) for (const [k, v] of Object.entries(s.best.eval)) rows.push([`best ${k}`, fmt(v)]);
  rows.push(['output', s.output], ['adapter', s.adapterDir]);
  const table = el('table');
  for (const [k, v] of rows) {
    const tr = el('tr');
    tr.append(el('th', { text: k }), el('td', { text: v }));
    table.append(tr);
  }
  box.append(table);
  return box;
}

function render(): void {
  const datasets = (pick: (s: StepRecord) => number) => state.runs.map((run, i) => ({
    label: run.title,
    data: run.steps.map((s) => ({ x: s.step, y: pick(s) })),
    borderColor: PALETTE[i % PALETTE.length],
    backgroundColor: PALETTE[i % PALETTE.length],
    borderWidth: 1.5,
    pointRadius: run.steps.length > 60 ? 0 : 2,
    tension: 0,
  }));
  lossChart.data.datasets = datasets((s) => s.loss);
  lrChart.data.datasets = datasets((s) => s.lr);
  lossChart.update('none');
  lrChart.update('none');
  const points = state.runs.reduce((n, r) => n + r.steps.length, 0);
  lossCanvas.dataset.points = String(points);
  lrCanvas.dataset.points = String(points);
  emptyBox.hidden = state.runs.length > 0;

  runsBox.replaceChildren();
  state.runs.forEach((run, i) => {
    const section = el('section', { cls: 'run' });
    section.dataset.runId = run.runId;
    const h = el('h2');
    const swatch = el('span', { text: '■ ', cls: 'swatch' });
    swatch.style.color = PALETTE[i % PALETTE.length];
    h.append(swatch, document.createTextNode(run.title));
    section.append(h);
    if (run.output) section.append(el('div', { text: run.output, cls: 'path' }));
    if (run.phase) section.append(el('div', { text: run.phase, cls: 'phase' }));
    const live = liveLine(run);
    if (live) section.append(el('div', { text: live, cls: 'live' }));
    if (run.error) section.append(el('pre', { text: run.error, cls: 'error' }));
    if (run.evals.length) {
      section.append(el('h3', { text: 'Validation' }));
      section.append(evalTable(run));
    }
    if (run.summary) section.append(summaryBox(run.summary));
    runsBox.append(section);
  });
  document.body.dataset.runs = String(state.runs.length);
  document.body.dataset.finished = String(state.runs.filter((r) => r.summary).length);
}

// Coalesce bursts of messages into one redraw per animation frame.
let pending = false;
function scheduleRender(): void {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render();
    vscode.setState(state);
  });
}

window.addEventListener('message', (e: MessageEvent<TrainingPanelUpdate>) => {
  const m = e.data;
  if (!m || typeof m !== 'object' || typeof (m as { type?: unknown }).type !== 'string') return;
  applyUpdate(state, m, Date.now());
  scheduleRender();
});

render();
vscode.postMessage({ type: 'ready', runs: state.runs.map((r) => ({ runId: r.runId, output: r.output })) });
