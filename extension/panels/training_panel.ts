/**
 * The training panel: a webview beside the config that draws the runs of this window (live) and runs
 * loaded from their metrics.jsonl. One panel holds any number of runs, overlaid.
 *
 * It keeps no state of its own beyond the runs it forwards progress for: the webview keeps its state
 * with setState, so it survives being hidden (no retainContextWhenHidden) and a window reload (the
 * serializer revives it; then every run with a known output folder is reloaded from metrics.jsonl, which
 * the engine writes as it goes, so nothing sent while the panel was hidden is lost).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { panelHtml } from './webview_html';
import { ReadMetricsRequest } from '../../sidecar/protocol';
import type { TrainRequest, TrainingPanelRequest, TrainingPanelUpdate } from '../../sidecar/protocol';
import type { SidecarClient } from '../client';

/** Messages kept for a page that is loading or hidden; beyond this the oldest steps are dropped. */
const MAX_QUEUE = 100000;

export class TrainingPanel implements vscode.Disposable {
  static readonly viewType = 'loraxs.trainingPanel';
  private static current: TrainingPanel | undefined;

  /** Run ids whose progress notifications this panel forwards. */
  private readonly live = new Set<string>();
  private readonly disposables: vscode.Disposable[] = [];
  private ready = false;
  private readonly queue: TrainingPanelUpdate[] = [];

  /** Opens the panel beside the active editor, or reveals it. */
  static createOrShow(extensionUri: vscode.Uri, client: SidecarClient): TrainingPanel {
    if (TrainingPanel.current) {
      TrainingPanel.current.panel.reveal(vscode.ViewColumn.Beside, true);
      return TrainingPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(TrainingPanel.viewType, 'LoRA-XS Training',
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, TrainingPanel.webviewOptions(extensionUri));
    TrainingPanel.current = new TrainingPanel(panel, extensionUri, client);
    return TrainingPanel.current;
  }

  /** The panel of this window, if open. */
  static get instance(): TrainingPanel | undefined {
    return TrainingPanel.current;
  }

  /** Restores a panel after a window reload (WebviewPanelSerializer). */
  static revive(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, client: SidecarClient): TrainingPanel {
    TrainingPanel.current?.dispose();
    TrainingPanel.current = new TrainingPanel(panel, extensionUri, client);
    return TrainingPanel.current;
  }

  static webviewOptions(extensionUri: vscode.Uri): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist', 'webview')] };
  }

  private constructor(readonly panel: vscode.WebviewPanel, private readonly extensionUri: vscode.Uri, private readonly client: SidecarClient) {
    panel.webview.options = TrainingPanel.webviewOptions(extensionUri);
    panel.webview.html = this.html();
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: TrainingPanelRequest) => this.onMessage(m)),
      // A hidden webview is torn down: it reports `ready` again when shown, and is brought up to date then.
      panel.onDidChangeViewState(() => {
        if (!panel.visible) this.ready = false;
      }),
      client.onProgress((p) => {
        if (this.live.has(p.runId) && (p.kind === 'step' || p.kind === 'eval' || p.kind === 'phase')) this.post({ type: 'progress', progress: p });
      }),
    );
  }

  /** A new run: the panel forwards its progress from now on. */
  startRun(runId: string, title: string, output?: string): void {
    this.live.add(runId);
    this.post({ type: 'reset', runId, title, output });
  }

  finishRun(runId: string, result: TrainRequest.Result): void {
    this.live.delete(runId);
    this.post({ type: 'finished', runId, result });
  }

  /** A run that failed; `titleIfNotStarted` names one that failed before it started (a config error). */
  failRun(runId: string, message: string, titleIfNotStarted?: string): void {
    this.live.delete(runId);
    if (titleIfNotStarted) this.post({ type: 'reset', runId, title: titleIfNotStarted });
    this.post({ type: 'failed', runId, message });
  }

  /** Shows a run's saved records (metrics.jsonl in `output`). */
  async loadRun(output: string, title?: string, runId = `saved:${output}`): Promise<number> {
    const r = await this.client.languageClient.sendRequest(ReadMetricsRequest.type, { output });
    this.post({ type: 'load', runId, title: title ?? path.basename(r.output), output: r.output, records: r.records });
    return r.records.length;
  }

  private post(m: TrainingPanelUpdate): void {
    if (!this.ready) {
      // Until the page has loaded (or while it is hidden, torn down), messages wait; the page replays them.
      this.queue.push(m);
      const oldestStep = this.queue.length > MAX_QUEUE ? this.queue.findIndex((q) => q.type === 'progress' && q.progress.kind === 'step') : -1;
      if (oldestStep >= 0) this.queue.splice(oldestStep, 1);
      return;
    }
    void this.panel.webview.postMessage(m);
  }

  private onMessage(m: TrainingPanelRequest): void {
    if (m?.type !== 'ready') return;
    this.ready = true;
    const queued = this.queue.splice(0);
    for (const q of queued) void this.panel.webview.postMessage(q);
    // Bring every run with a known output up to date from its metrics.jsonl (window reload, hidden panel).
    const outputs = m.runs.filter((r): r is { runId: string; output: string } => typeof r.output === 'string');
    if (!outputs.length) return;
    void this.client.whenRunning().then((ok) => {
      if (!ok) return;
      for (const run of outputs) {
        this.loadRun(run.output, '', run.runId).catch((e: Error) => this.client.log(`[panel] cannot reload ${run.output}: ${e.message}`));
      }
    });
  }

  private html(): string {
    return panelHtml(this.panel.webview, this.extensionUri, {
      name: 'training_panel',
      title: 'LoRA-XS Training',
      body: `<h1>LoRA-XS training</h1>
<p id="empty">No runs yet: run "LoRA-XS: Fine-tune with LoRA-XS" on a config, or "Show Training Results".</p>
<div class="charts">
  <div class="chart"><canvas id="loss-chart" aria-label="training loss per step"></canvas></div>
  <div class="chart"><canvas id="lr-chart" aria-label="learning rate per step"></canvas></div>
</div>
<div id="runs"></div>`,
    });
  }

  dispose(): void {
    if (TrainingPanel.current === this) TrainingPanel.current = undefined;
    for (const d of this.disposables.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

/** Revives the training panel after a window reload. */
export function registerTrainingPanelSerializer(extensionUri: vscode.Uri, client: SidecarClient): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(TrainingPanel.viewType, {
    async deserializeWebviewPanel(panel: vscode.WebviewPanel): Promise<void> {
      TrainingPanel.revive(panel, extensionUri, client);
    },
  });
}
