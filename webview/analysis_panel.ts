/**
 * The analysis panel's browser side (bundled to dist/webview/analysis_panel.js with Chart.js): a heatmap
 * of layer × module type coloured by the metric for a chosen region and fraction (hover shows the
 * numbers), the metric against r_frac per module type and region, singular-value spectra, and the
 * init-comparison curves; PNG and CSV export of each; a form that starts an analysis.
 *
 * State lives in `vscode.setState`, so the panel survives being hidden and a window reload. Everything
 * from configs, models and data is set with textContent, never parsed as HTML.
 */
import type { AnalysisPanelMessage, AnalysisPanelRequest, ReadAnalysisRequest } from '../sidecar/protocol';
import { Chart, PALETTE, cssVar, el, vscodeApi } from './panel_kit';
import './analysis_panel.css';
import type { AblationReport, AblationRow, AnalysisKind, AnalysisRequest, InitReport, InitRun, Region, SpectraReport } from '../sidecar/records';

type Reports = Omit<ReadAnalysisRequest.Result, 'dir'>;

interface PanelState {
  uri?: string;
  title?: string;
  reports: Reports;
  /** The analysis running now. */
  live?: { jobId: string; kind: AnalysisKind; rows: AblationRow[]; runs: InitRun[]; phase?: string; error?: string };
  /** `fractionChosen`: the user picked the fraction; until then it follows the rows shown (the first strictly inside (0, 1)). */
  view: { source: 'retention' | 'delta'; region: Region; fraction: number | null; fractionChosen?: boolean; spectraModule: string | null };
  form: { kind: AnalysisKind; adapter: string; base: string; fractions: string; perLayer: boolean; evalLimit: string; seeds: string; inits: string; ranks: string };
}

const vscode = vscodeApi<AnalysisPanelRequest, PanelState>();
const state: PanelState = vscode.getState() ?? {
  reports: { retention: null, delta: null, init: null, spectra: null },
  view: { source: 'retention', region: 'top', fraction: null, spectraModule: null },
  form: { kind: 'retention', adapter: '', base: '', fractions: '', perLayer: true, evalLimit: '', seeds: '', inits: '', ranks: '' },
};
const charts: Chart[] = [];

// ---------------------------------------------------------------------------------------------------
// Small DOM helpers (text only)

function button(text: string, onClick: () => void, secondary = false): HTMLButtonElement {
  const b = el('button', { text, cls: secondary ? 'secondary' : undefined });
  b.addEventListener('click', onClick);
  return b;
}

function select<T extends string>(options: Array<[T, string]>, value: T, onChange: (v: T) => void): HTMLSelectElement {
  const s = el('select');
  for (const [v, label] of options) {
    const o = el('option', { text: label });
    o.value = v;
    if (v === value) o.selected = true;
    s.appendChild(o);
  }
  s.addEventListener('change', () => onChange(s.value as T));
  return s;
}

function textInput(value: string, placeholder: string, onInput: (v: string) => void, cls?: string): HTMLInputElement {
  const i = el('input', { cls });
  i.type = 'text';
  i.value = value;
  i.placeholder = placeholder;
  i.addEventListener('input', () => onInput(i.value));
  return i;
}

function fmt(v: number | null | undefined, digits = 4): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

const REGION_DASH: Record<Region, number[]> = { top: [], middle: [6, 3], bottom: [2, 2] };

function csvOf(columns: string[], rows: Array<Record<string, unknown>>): string {
  const field = (v: unknown): string => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [columns.join(','), ...rows.map((r) => columns.map((c) => field(r[c])).join(','))].join('\n') + '\n';
}

function exportPng(canvas: HTMLCanvasElement, name: string): void {
  vscode.postMessage({ type: 'export', format: 'png', suggestedName: name, data: canvas.toDataURL('image/png') });
}

function exportCsv(text: string, name: string): void {
  vscode.postMessage({ type: 'export', format: 'csv', suggestedName: name, data: text });
}

// ---------------------------------------------------------------------------------------------------
// Messages

function save(): void {
  vscode.setState(state);
}

window.addEventListener('message', (event: MessageEvent<AnalysisPanelMessage>) => {
  const m = event.data;
  switch (m.type) {
    case 'config':
      if (state.uri !== m.uri) state.reports = { retention: null, delta: null, init: null, spectra: null };
      state.uri = m.uri;
      state.title = m.title;
      break;
    case 'reports':
      state.reports = { retention: m.reports.retention, delta: m.reports.delta, init: m.reports.init, spectra: m.reports.spectra };
      break;
    case 'started':
      state.live = { jobId: m.jobId, kind: m.kind, rows: [], runs: [] };
      break;
    case 'progress': {
      const p = m.progress;
      if (!state.live || state.live.jobId !== p.jobId) return;
      if (p.kind === 'row') state.live.rows.push(p.row);
      else if (p.kind === 'run') state.live.runs.push(p.run);
      else if (p.kind === 'phase') state.live.phase = `${p.phase}: ${p.done}/${p.total}`;
      else if (p.kind === 'log') state.live.phase = p.message;
      // Rows arrive quickly: redraw the status line only, the charts at most every 500 ms.
      scheduleRender();
      save();
      return;
    }
    case 'finished': {
      const r = m.report;
      if (r.kind === 'retention') state.reports.retention = r as AblationReport;
      else if (r.kind === 'delta') state.reports.delta = r as AblationReport;
      else if (r.kind === 'init') state.reports.init = r as InitReport;
      else state.reports.spectra = r as SpectraReport;
      if (r.kind === 'retention' || r.kind === 'delta') state.view.source = r.kind;
      state.live = undefined;
      break;
    }
    case 'failed':
      if (state.live) state.live.error = m.message;
      else state.live = { jobId: '', kind: state.form.kind, rows: [], runs: [], error: m.message };
      break;
  }
  save();
  render();
});

let pending: number | undefined;
function scheduleRender(): void {
  if (pending !== undefined) return;
  pending = window.setTimeout(() => {
    pending = undefined;
    render();
  }, 500);
}

// ---------------------------------------------------------------------------------------------------
// The form

function requestFromForm(): AnalysisRequest {
  const f = state.form;
  const nums = (s: string): number[] | undefined => {
    const xs = s.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
    return xs.length ? xs : undefined;
  };
  const positive = (s: string): number | undefined => (s.trim() ? Number(s) : undefined);
  return {
    kind: f.kind,
    adapterDir: f.adapter.trim() || undefined,
    baseDir: f.base.trim() || undefined,
    fractions: nums(f.fractions),
    perLayer: f.perLayer,
    evalLimit: positive(f.evalLimit),
    seeds: positive(f.seeds),
    inits: f.inits.trim() ? f.inits.split(',').map((x) => x.trim()).filter(Boolean) as AnalysisRequest['inits'] : undefined,
    ranks: nums(f.ranks),
  };
}

function formView(): HTMLElement {
  const f = state.form;
  const set = <K extends keyof PanelState['form']>(k: K) => (v: PanelState['form'][K]) => {
    f[k] = v;
    save();
  };
  const perLayer = el('input');
  perLayer.type = 'checkbox';
  perLayer.checked = f.perLayer;
  perLayer.addEventListener('change', () => set('perLayer')(perLayer.checked));
  const running = !!state.live && !state.live.error;
  return el('div', { cls: 'controls' },
    el('label', { text: 'analysis' }, select<AnalysisKind>([['retention', 'retention ablation'], ['delta', 'ΔW projection'], ['init', 'init / rank comparison'], ['spectra', 'spectra']], f.kind, (v) => { set('kind')(v); render(); })),
    el('label', { text: 'adapter' }, textInput(f.adapter, 'adapter folder (optional)', set('adapter'), 'wide')),
    ...(f.kind === 'delta' ? [el('label', { text: 'base' }, textInput(f.base, 'base model folder', set('base'), 'wide'))] : []),
    ...(f.kind === 'retention' || f.kind === 'delta' ? [
      el('label', { text: 'fractions' }, textInput(f.fractions, 'config default', set('fractions'))),
      el('label', { text: 'eval limit' }, textInput(f.evalLimit, '256', set('evalLimit'))),
      el('label', { text: 'per layer' }, perLayer),
    ] : []),
    ...(f.kind === 'init' ? [
      el('label', { text: 'inits' }, textInput(f.inits, 'svd,random,svd-of-random', set('inits'))),
      el('label', { text: 'ranks' }, textInput(f.ranks, 'config rank', set('ranks'))),
      el('label', { text: 'seeds' }, textInput(f.seeds, 'config default', set('seeds'))),
    ] : []),
    running ? button('Cancel', () => vscode.postMessage({ type: 'cancel' }), true) : button('Run', () => vscode.postMessage({ type: 'run', request: requestFromForm() })),
  );
}

// ---------------------------------------------------------------------------------------------------
// Ablation views

/** The rows to show: the live sweep's while it runs, else the saved report's. */
function ablationRows(): { report: AblationReport | null; rows: AblationRow[] } {
  const report = state.reports[state.view.source];
  if (state.live && state.live.kind === state.view.source) return { report, rows: state.live.rows };
  return { report, rows: report?.results ?? [] };
}

/** Diverging red – yellow – green (ColorBrewer RdYlGn's ends and middle): t = 0 worst, 1 best. */
const HEAT_STOPS: Array<[number, number, number]> = [[215, 48, 39], [254, 224, 139], [26, 152, 80]];

/** Colour of a value between the lowest and highest seen (green is better). */
function heatRgb(value: number, lo: number, hi: number, higherIsBetter: boolean): [number, number, number] {
  let t = hi > lo ? (value - lo) / (hi - lo) : 0.5;
  t = Math.min(1, Math.max(0, higherIsBetter ? t : 1 - t));
  const k = t < 0.5 ? 0 : 1;
  const u = t < 0.5 ? t * 2 : (t - 0.5) * 2;
  return [0, 1, 2].map((c) => Math.round(HEAT_STOPS[k][c] + (HEAT_STOPS[k + 1][c] - HEAT_STOPS[k][c]) * u)) as [number, number, number];
}

const css = ([r, g, b]: [number, number, number]): string => `rgb(${r},${g},${b})`;

/** Dark or light text, whichever reads better on `rgb` (relative luminance). */
function inkOn([r, g, b]: [number, number, number]): string {
  const lin = (c: number) => ((c /= 255) <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b) > 0.2 ? '#111' : '#fff';
}

function heatmapView(report: AblationReport | null, rows: AblationRow[]): HTMLElement {
  const box = el('div');
  const perLayer = rows.filter((r) => r.layer !== null);
  const fractions = [...new Set(rows.map((r) => r.fraction))].sort((a, b) => a - b);
  // A sweep's rows arrive fraction by fraction: the default view moves on as they come (fraction 0 alone is
  // not what anyone wants to look at); a fraction the user picked stays while it exists.
  if (!state.view.fractionChosen || state.view.fraction === null || !fractions.includes(state.view.fraction)) {
    state.view.fraction = fractions.find((f) => f > 0 && f < 1) ?? fractions[0] ?? null;
  }
  box.appendChild(el('div', { cls: 'selectors' },
    el('label', { text: 'region' }, select<Region>([['top', 'top'], ['middle', 'middle'], ['bottom', 'bottom']], state.view.region, (v) => { state.view.region = v; save(); render(); })),
    el('label', { text: 'r_frac' }, select(fractions.map((f) => [String(f), String(f)] as [string, string]), String(state.view.fraction), (v) => { state.view.fraction = Number(v); state.view.fractionChosen = true; save(); render(); })),
  ));
  if (!perLayer.length) {
    box.appendChild(el('p', { cls: 'note', text: 'No per-layer results: run the analysis with "per layer" to fill the heatmap.' }));
    return box;
  }
  const modules = [...new Set(perLayer.map((r) => r.module))];
  const layers = [...new Set(perLayer.map((r) => r.layer as number))].sort((a, b) => a - b);
  const cells = perLayer.filter((r) => r.region === state.view.region && r.fraction === state.view.fraction);
  // One colour scale for every region and fraction (and the unablated value), so views compare.
  const values = perLayer.map((r) => r.value).filter(Number.isFinite);
  const lo = Math.min(...values, report?.baseline ?? Infinity);
  const hi = Math.max(...values, report?.baseline ?? -Infinity);
  const higher = report?.higherIsBetter ?? true;

  const canvas = el('canvas');
  canvas.id = 'heatmap';
  const ctx = canvas.getContext('2d')!;
  const bodyStyle = getComputedStyle(document.body);
  const fg = bodyStyle.color;
  const font = `12px ${bodyStyle.fontFamily || 'sans-serif'}`;
  ctx.font = font;
  const name = (m: string) => (m.length > 30 ? `…${m.slice(-29)}` : m);
  const left = Math.ceil(Math.max(...modules.map((m) => ctx.measureText(name(m)).width))) + 14;
  const top = 22, ch = 24;
  // Cells fill the width available, within 30–72 px; values are written in them when they fit.
  const avail = Math.max(320, document.body.clientWidth - 40);
  const cw = Math.max(30, Math.min(72, Math.floor((avail - left - 10) / layers.length)));
  const showValues = cw >= 46;
  const gridW = cw * layers.length, gridH = ch * modules.length;
  const barW = Math.max(180, Math.min(320, gridW)), barY = top + gridH + 16;
  const width = Math.max(left + gridW, left + barW) + 50, height = barY + 48;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  ctx.scale(dpr, dpr);
  ctx.font = font;
  canvas.setAttribute('aria-label', `${report?.metric ?? 'metric'} per layer and module type, ${state.view.region} ${state.view.fraction}`);
  // For tests and tools: what was drawn, and where cell (i, j) lies (CSS pixels).
  Object.assign(canvas.dataset, { layers: String(layers.length), modules: String(modules.length), left: String(left), top: String(top), cellWidth: String(cw), cellHeight: String(ch) });
  const colours = new Set<string>();
  let drawn = 0;
  ctx.textBaseline = 'middle';
  ctx.fillStyle = fg;
  ctx.textAlign = 'center';
  layers.forEach((l, j) => ctx.fillText(`L${l}`, left + j * cw + (cw - 2) / 2, top / 2));
  modules.forEach((m, i) => {
    const y = top + i * ch;
    ctx.fillStyle = fg;
    ctx.textAlign = 'right';
    ctx.fillText(name(m), left - 8, y + (ch - 2) / 2);
    ctx.textAlign = 'center';
    layers.forEach((l, j) => {
      const c = cells.find((r) => r.module === m && r.layer === l);
      const rgb = c && Number.isFinite(c.value) ? heatRgb(c.value, lo, hi, higher) : null;
      ctx.fillStyle = rgb ? css(rgb) : 'rgba(128,128,128,0.15)';
      ctx.fillRect(left + j * cw, y, cw - 2, ch - 2);
      if (c) {
        drawn++;
        colours.add(ctx.fillStyle as string);
        if (showValues) {
          ctx.fillStyle = rgb ? inkOn(rgb) : fg;
          ctx.fillText(fmt(c.value, 3), left + j * cw + (cw - 2) / 2, y + (ch - 2) / 2);
        }
      }
    });
  });
  // The colour scale, with the unablated value marked.
  for (let x = 0; x < barW; x++) {
    ctx.fillStyle = css(heatRgb(lo + ((hi - lo) * x) / Math.max(1, barW - 1), lo, hi, higher));
    ctx.fillRect(left + x, barY, 1, 10);
  }
  ctx.fillStyle = fg;
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left';
  ctx.fillText(fmt(lo, 3), left, barY + 14);
  ctx.textAlign = 'right';
  ctx.fillText(fmt(hi, 3), left + barW, barY + 14);
  ctx.textAlign = 'right';
  ctx.fillText(report?.metric ?? 'metric', left - 8, barY);
  if (report && Number.isFinite(report.baseline)) {
    const bx = hi > lo ? left + ((report.baseline - lo) / (hi - lo)) * (barW - 1) : left + barW / 2;
    ctx.fillRect(bx - 1, barY - 3, 2, 16);
    const label = `▲ unablated ${fmt(report.baseline, 3)}`;
    ctx.textAlign = 'left';
    ctx.fillText(label, Math.min(Math.max(left, bx - 4), left + barW + 40 - ctx.measureText(label).width), barY + 30);
  }
  canvas.dataset.cells = String(drawn);
  canvas.dataset.colours = String(colours.size);
  const tip = el('div');
  tip.id = 'tooltip';
  canvas.addEventListener('mousemove', (e) => {
    const j = Math.floor((e.offsetX - left) / cw);
    const i = Math.floor((e.offsetY - top) / ch);
    const c = i >= 0 && j >= 0 && i < modules.length && j < layers.length ? cells.find((r) => r.module === modules[i] && r.layer === layers[j]) : undefined;
    if (!c) {
      tip.style.display = 'none';
      return;
    }
    const all = rows.find((r) => r.module === c.module && r.layer === null && r.region === c.region && r.fraction === c.fraction);
    tip.textContent = [
      `${c.module}, layer ${c.layer}`,
      `${c.region} ${c.fraction}: ${report?.metric ?? 'metric'} ${fmt(c.value)}`,
      `unablated: ${fmt(report?.baseline)}`,
      `change: ${fmt(report ? c.value - report.baseline : null)}`,
      ...(all ? [`all layers at once: ${fmt(all.value)}`] : []),
    ].join('\n');
    tip.style.display = 'block';
    tip.style.left = `${e.offsetX + 12}px`;
    tip.style.top = `${e.offsetY + 12}px`;
  });
  canvas.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  box.appendChild(el('div', { cls: 'heatmap-wrap' }, canvas, tip));
  box.appendChild(el('div', { cls: 'controls' },
    button('Export PNG', () => exportPng(canvas, `${state.view.source}-heatmap.png`), true),
    button('Export CSV', () => exportCsv(csvOf(['module', 'layer', 'region', 'fraction', 'value'], rows as unknown as Array<Record<string, unknown>>), `${state.view.source}.csv`), true),
  ));
  return box;
}

/** A line chart; the legend shows each series' line and dash, below the plot when there are many series. */
function lineChart(canvas: HTMLCanvasElement, datasets: Chart<'line'>['data']['datasets'], xLabel: string, yLabel: string, logY = false): void {
  const fg = cssVar('--vscode-foreground', '#ccc');
  const grid = cssVar('--vscode-editorWidget-border', 'rgba(128,128,128,0.3)');
  const many = datasets.length > 8;
  if (many) canvas.parentElement?.classList.add('tall');
  canvas.dataset.series = String(datasets.length);
  canvas.dataset.points = String(datasets.reduce((n, d) => n + d.data.length, 0));
  charts.push(new Chart(canvas, {
    type: 'line',
    data: { datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      scales: {
        x: { type: 'linear', title: { display: true, text: xLabel, color: fg }, ticks: { color: fg }, grid: { color: grid } },
        y: { type: logY ? 'logarithmic' : 'linear', title: { display: true, text: yLabel, color: fg }, ticks: { color: fg }, grid: { color: grid } },
      },
      plugins: {
        legend: {
          position: many ? 'bottom' : 'right',
          labels: {
            color: fg, usePointStyle: true, pointStyle: 'line', pointStyleWidth: 30, boxHeight: 8, padding: 8, font: { size: 11 },
            // The point style's sample line takes the point's style: give it the series' width and dash.
            generateLabels: (chart) => Chart.defaults.plugins.legend.labels.generateLabels(chart).map((item) => {
              const ds = chart.data.datasets[item.datasetIndex ?? 0] as { borderDash?: number[] };
              return { ...item, lineDash: ds.borderDash ?? [], lineWidth: 2 };
            }),
          },
        },
        tooltip: { mode: 'nearest', intersect: false },
      },
    },
  }));
}

function fractionLinesView(report: AblationReport | null, rows: AblationRow[]): HTMLElement {
  const all = rows.filter((r) => r.layer === null);
  const modules = [...new Set(all.map((r) => r.module))];
  const datasets = modules.flatMap((m, i) => (['top', 'middle', 'bottom'] as Region[]).map((region) => ({
    label: `${m} ${region}`,
    data: all.filter((r) => r.module === m && r.region === region).map((r) => ({ x: r.fraction, y: r.value })),
    borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length], borderDash: REGION_DASH[region], pointRadius: 2,
  }))).filter((d) => d.data.length);
  const canvas = el('canvas');
  canvas.id = 'lines-chart';
  const box = el('div', {}, el('div', { cls: 'chart' }, canvas));
  if (datasets.length) lineChart(canvas, datasets, 'r_frac (fraction kept)', report?.metric ?? 'metric');
  box.appendChild(el('div', { cls: 'controls' }, button('Export PNG', () => exportPng(canvas, `${state.view.source}-lines.png`), true)));
  return box;
}

// ---------------------------------------------------------------------------------------------------
// Spectra and init comparison

function spectraView(r: SpectraReport): HTMLElement {
  const box = el('div');
  const modules = r.modules;
  if (!state.view.spectraModule || !modules.includes(state.view.spectraModule)) state.view.spectraModule = modules[0] ?? null;
  box.appendChild(el('div', { cls: 'selectors' }, el('label', { text: 'module type' },
    select(modules.map((m) => [m, m] as [string, string]), state.view.spectraModule ?? '', (v) => { state.view.spectraModule = v; save(); render(); }))));
  const entries = r.entries.filter((e) => e.module === state.view.spectraModule);
  const canvas = el('canvas');
  canvas.id = 'spectra-chart';
  box.appendChild(el('div', { cls: 'chart' }, canvas));
  lineChart(canvas, entries.map((e, i) => ({
    label: e.layer === null ? e.name : `layer ${e.layer}`,
    data: e.singularValues.map((s, k) => ({ x: k + 1, y: Math.max(s, 1e-12) })),
    borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length], pointRadius: 0, borderWidth: 1,
  })), 'index i', 'σ_i', true);
  const table = el('table', {}, el('tr', {}, ...['module', 'layer', 'shape', 'rank', 'energy kept at rank', '‖ΔW‖/‖W‖'].map((h) => el('th', { text: h }))));
  for (const e of entries) {
    table.appendChild(el('tr', {}, ...[e.name, e.layer === null ? '' : String(e.layer), `${e.outFeatures} × ${e.inFeatures}`, String(e.rank),
      `${(100 * e.energyAtRank).toFixed(1)} %`, e.deltaRatio === null ? '–' : e.deltaRatio.toExponential(2)].map((t) => el('td', { text: t }))));
  }
  box.appendChild(table);
  box.appendChild(el('div', { cls: 'controls' },
    button('Export PNG', () => exportPng(canvas, 'spectra.png'), true),
    button('Export CSV', () => exportCsv(csvOf(['module', 'layer', 'name', 'index', 'sigma'],
      r.entries.flatMap((e) => e.singularValues.map((s, k) => ({ module: e.module, layer: e.layer, name: e.name, index: k + 1, sigma: s })))), 'spectra.csv'), true),
  ));
  return box;
}

function initView(r: InitReport | null, live: InitRun[]): HTMLElement {
  const box = el('div');
  const runs = live.length ? live : r?.runs ?? [];
  const settings = [...new Set(runs.map((x) => `${x.init} r${x.rank}`))];
  const canvas = el('canvas');
  canvas.id = 'init-chart';
  box.appendChild(el('div', { cls: 'chart' }, canvas));
  lineChart(canvas, runs.map((x) => {
    const i = settings.indexOf(`${x.init} r${x.rank}`);
    return {
      label: `${x.init} r${x.rank} seed ${x.seed}`,
      data: x.curve.map((p) => ({ x: p.epoch, y: p.value })),
      borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length], pointRadius: 2, borderWidth: 1,
    };
  }), 'epoch', r?.metric ?? 'metric');
  if (r) {
    const table = el('table', {}, el('tr', {}, ...['init', 'rank', 'runs', 'best (median ± std)', 'after epoch 1', 'after epoch 2'].map((h) => el('th', { text: h }))));
    for (const s of r.results) {
      table.appendChild(el('tr', {}, ...[s.init, String(s.rank), String(s.runs), `${fmt(s.bestMedian)} ± ${fmt(s.bestStd)}`,
        `${fmt(s.after1Median)} ± ${fmt(s.after1Std)}`, `${fmt(s.after2Median)} ± ${fmt(s.after2Std)}`].map((t) => el('td', { text: t }))));
    }
    box.appendChild(table);
  }
  box.appendChild(el('div', { cls: 'controls' },
    button('Export PNG', () => exportPng(canvas, 'init-curves.png'), true),
    ...(r ? [button('Export CSV', () => exportCsv(csvOf(['init', 'rank', 'runs', 'bestMedian', 'bestStd', 'after1Median', 'after1Std', 'after2Median', 'after2Std'],
      r.results as unknown as Array<Record<string, unknown>>), 'init.csv'), true)] : []),
  ));
  return box;
}

// ---------------------------------------------------------------------------------------------------
// The page

function render(): void {
  // A full render supersedes a scheduled one (which would otherwise redraw, and drop a hovered tooltip, later).
  if (pending !== undefined) {
    window.clearTimeout(pending);
    pending = undefined;
  }
  for (const c of charts.splice(0)) c.destroy();
  const app = document.getElementById('app')!;
  app.replaceChildren();
  app.appendChild(el('h1', { text: `Singular-value analysis${state.title ? ` — ${state.title}` : ''}` }));
  app.appendChild(formView());
  if (state.live) {
    app.appendChild(el('p', { cls: 'status', text: `running ${state.live.kind}${state.live.phase ? ` — ${state.live.phase}` : ''}` }));
    if (state.live.error) app.appendChild(el('p', { cls: 'error', text: state.live.error }));
  }
  const hasAblation = state.reports.retention || state.reports.delta || (state.live && (state.live.kind === 'retention' || state.live.kind === 'delta'));
  if (hasAblation) {
    app.appendChild(el('h2', { text: 'Ablations' }));
    app.appendChild(el('div', { cls: 'selectors' }, el('label', { text: 'show' },
      select<'retention' | 'delta'>([['retention', 'retention (appendix D)'], ['delta', 'ΔW projection (appendix E)']], state.view.source, (v) => { state.view.source = v; save(); render(); }))));
    const { report, rows } = ablationRows();
    if (report) {
      app.appendChild(el('p', { cls: 'note', text: `${report.metric} on ${report.evalExamples} validation examples; unablated ${fmt(report.baseline)}${report.cancelled ? ' (cancelled: run again to resume)' : ''}` }));
    }
    app.appendChild(heatmapView(report, rows));
    app.appendChild(el('h2', { text: 'Metric against r_frac (all layers of a module type at once)' }));
    app.appendChild(fractionLinesView(report, rows));
  }
  if (state.reports.spectra) {
    app.appendChild(el('h2', { text: 'Spectra' }));
    app.appendChild(spectraView(state.reports.spectra));
  }
  if (state.reports.init || (state.live && state.live.kind === 'init')) {
    app.appendChild(el('h2', { text: 'Initialisation and rank comparison' }));
    app.appendChild(initView(state.reports.init, state.live?.kind === 'init' ? state.live.runs : []));
  }
  if (!hasAblation && !state.reports.spectra && !state.reports.init && !state.live) {
    app.appendChild(el('p', { cls: 'note', text: 'No analyses yet for this config: choose one above and press Run.' }));
  }
}

render();
// The heatmap's cells follow the panel's width.
let resized: number | undefined;
window.addEventListener('resize', () => {
  window.clearTimeout(resized);
  resized = window.setTimeout(render, 200);
});
vscode.postMessage({ type: 'ready' });
