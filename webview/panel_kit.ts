/**
 * What the webview panels share: the typed VS Code API handle, Chart.js with the pieces they draw with,
 * a text-only element builder, the series palette and the theme's colours.
 */
import {
  CategoryScale, Chart, Legend, LineController, LineElement, LinearScale, LogarithmicScale, PointElement, Tooltip,
} from 'chart.js';
import './panel_base.css';

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, CategoryScale, Legend, Tooltip);
export { Chart };

/** The webview's handle to VS Code: messages out, and the state kept while hidden or across a reload. */
export interface VsCodeApi<Request, State> {
  postMessage(message: Request): void;
  getState(): State | undefined;
  setState(state: State): void;
}
declare function acquireVsCodeApi(): VsCodeApi<unknown, unknown>;

/** The page's VS Code API (acquireVsCodeApi may be called once per page). */
export function vscodeApi<Request, State>(): VsCodeApi<Request, State> {
  return acquireVsCodeApi() as VsCodeApi<Request, State>;
}

/** An element with text (never parsed as HTML), a class, and children. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, opts: { text?: string; cls?: string } = {}, ...children: Node[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (opts.text !== undefined) e.textContent = opts.text;
  if (opts.cls) e.className = opts.cls;
  for (const c of children) e.appendChild(c);
  return e;
}

/** Series colours (Tableau 10). */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/** A theme colour (CSS variable of the body), or `fallback` outside VS Code. */
export function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}
