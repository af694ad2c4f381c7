/**
 * The singular-value analysis panel beside a config: runs `loraxs/ablate` (retention, ΔW projection,
 * init comparison, spectra) and shows the reports saved under the config's `<output>/analysis/`.
 *
 * The webview keeps its view state with setState (no retainContextWhenHidden); on `ready` the extension
 * sends the config and re-reads the saved reports (`loraxs/readAnalysis`), so a hidden or reloaded panel
 * comes back complete. Progress of the running analysis is forwarded as it arrives.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { panelHtml } from './webview_html';
import { AblateProgressNotification, AblateRequest, CancelAblationRequest, ReadAnalysisRequest } from '../../sidecar/protocol';
import type { AnalysisPanelMessage, AnalysisPanelRequest } from '../../sidecar/protocol';
import type { SidecarClient } from '../client';
import type { AnalysisRequest } from '../../sidecar/records';

/** What the panel remembers across a window reload (the webview's state holds it too). */
interface SavedState {
  uri?: string;
}

export class AnalysisPanel implements vscode.Disposable {
  static readonly viewType = 'loraxs.analysisPanel';
  private static current: AnalysisPanel | undefined;

  private readonly disposables: vscode.Disposable[] = [];
  private ready = false;
  private readonly queue: AnalysisPanelMessage[] = [];
  private running: string | undefined;

  /** Opens the panel beside the editor for the config at `uri` (a string URI), or reveals it. */
  static createOrShow(extensionUri: vscode.Uri, client: SidecarClient, uri: string): AnalysisPanel {
    if (AnalysisPanel.current) {
      AnalysisPanel.current.panel.reveal(vscode.ViewColumn.Beside, true);
      AnalysisPanel.current.setConfig(uri);
      return AnalysisPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(AnalysisPanel.viewType, 'LoRA-XS Singular-Value Analysis',
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, AnalysisPanel.webviewOptions(extensionUri));
    AnalysisPanel.current = new AnalysisPanel(panel, extensionUri, client, uri);
    return AnalysisPanel.current;
  }

  static get instance(): AnalysisPanel | undefined {
    return AnalysisPanel.current;
  }

  /** Restores the panel after a window reload (WebviewPanelSerializer); `state` is the webview's saved state. */
  static revive(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, client: SidecarClient, state: SavedState | undefined): AnalysisPanel {
    AnalysisPanel.current?.dispose();
    AnalysisPanel.current = new AnalysisPanel(panel, extensionUri, client, state?.uri);
    return AnalysisPanel.current;
  }

  static webviewOptions(extensionUri: vscode.Uri): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist', 'webview')] };
  }

  private constructor(readonly panel: vscode.WebviewPanel, private readonly extensionUri: vscode.Uri,
    private readonly client: SidecarClient, private uri: string | undefined) {
    panel.webview.options = AnalysisPanel.webviewOptions(extensionUri);
    panel.webview.html = this.html();
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: AnalysisPanelRequest) => this.onMessage(m)),
      panel.onDidChangeViewState(() => {
        if (!panel.visible) this.ready = false;
      }),
    );
  }

  /** Shows the analyses of another config. */
  setConfig(uri: string): void {
    this.uri = uri;
    this.post({ type: 'config', uri, title: vscode.Uri.parse(uri).path.split('/').pop() ?? uri });
    void this.refresh();
  }

  /** Re-reads the saved reports of the config. */
  async refresh(): Promise<void> {
    if (!this.uri || !(await this.client.whenRunning())) return;
    try {
      const reports = await this.client.languageClient.sendRequest(ReadAnalysisRequest.type, { uri: this.uri });
      this.post({ type: 'reports', reports });
    } catch (e) {
      this.client.log(`[analysis panel] cannot read the saved analyses: ${(e as Error).message}`);
    }
  }

  /** Runs an analysis of the panel's config and streams its progress to the webview. */
  async run(request: AnalysisRequest): Promise<void> {
    const uri = this.uri;
    if (!uri) return;
    const why = this.client.unavailableReason();
    if (why) {
      void vscode.window.showErrorMessage(why);
      return;
    }
    if (this.running) {
      void vscode.window.showWarningMessage('an analysis is already running in this panel; cancel it first');
      return;
    }
    // Folders typed in the panel are relative to the config (the sidecar's working folder is not).
    const configDir = path.dirname(vscode.Uri.parse(uri).fsPath);
    const resolve = (dir: string | undefined): string | undefined => (dir ? path.resolve(configDir, dir) : undefined);
    request = { ...request, adapterDir: resolve(request.adapterDir), baseDir: resolve(request.baseDir) };
    const jobId = `${request.kind}-${Date.now()}`;
    this.running = jobId;
    this.post({ type: 'started', jobId, kind: request.kind });
    const lc = this.client.languageClient;
    const sub = lc.onNotification(AblateProgressNotification.type, (p) => {
      if (p.jobId === jobId) this.post({ type: 'progress', progress: p });
    });
    try {
      const report = await lc.sendRequest(AblateRequest.type, { ...request, uri, jobId });
      this.post({ type: 'finished', report });
      if (report.cancelled) void vscode.window.showInformationMessage(`LoRA-XS: the ${request.kind} analysis was cancelled; run it again to resume`);
    } catch (e) {
      const message = (e as Error).message;
      this.post({ type: 'failed', message });
      void vscode.window.showErrorMessage(`LoRA-XS analysis failed: ${message}`);
    } finally {
      sub.dispose();
      this.running = undefined;
    }
  }

  async cancel(): Promise<void> {
    if (!this.running || !this.client.running) return;
    await this.client.languageClient.sendRequest(CancelAblationRequest.type, { jobId: this.running });
  }

  private post(m: AnalysisPanelMessage): void {
    if (!this.ready) {
      // Rows are cheap to lose: the report (and `reports` on ready) carries them all.
      if (m.type !== 'progress' || m.progress.kind !== 'row') this.queue.push(m);
      return;
    }
    void this.panel.webview.postMessage(m);
  }

  private onMessage(m: AnalysisPanelRequest): void {
    switch (m?.type) {
      case 'ready': {
        this.ready = true;
        if (this.uri) this.post({ type: 'config', uri: this.uri, title: vscode.Uri.parse(this.uri).path.split('/').pop() ?? this.uri });
        for (const q of this.queue.splice(0)) void this.panel.webview.postMessage(q);
        void this.refresh();
        return;
      }
      case 'run':
        void this.run(m.request);
        return;
      case 'cancel':
        void this.cancel();
        return;
      case 'export':
        void this.export(m.format, m.suggestedName, m.data);
        return;
    }
  }

  /** Saves a PNG (data URL) or CSV (text) the webview produced. */
  private async export(format: 'png' | 'csv', suggestedName: string, data: string): Promise<void> {
    const safe = suggestedName.replace(/[^A-Za-z0-9._-]/g, '_');
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const target = await vscode.window.showSaveDialog({
      defaultUri: folder ? vscode.Uri.joinPath(folder, safe) : undefined,
      filters: format === 'png' ? { 'PNG image': ['png'] } : { CSV: ['csv'] },
    });
    if (!target) return;
    const bytes = format === 'png'
      ? Buffer.from(data.replace(/^data:image\/png;base64,/, ''), 'base64')
      : Buffer.from(data, 'utf8');
    await vscode.workspace.fs.writeFile(target, bytes);
    void vscode.window.showInformationMessage(`LoRA-XS: saved ${target.fsPath}`);
  }

  private html(): string {
    return panelHtml(this.panel.webview, this.extensionUri, {
      name: 'analysis_panel',
      title: 'LoRA-XS Singular-Value Analysis',
      body: `<div id="app"></div>`,
    });
  }

  dispose(): void {
    if (AnalysisPanel.current === this) AnalysisPanel.current = undefined;
    for (const d of this.disposables.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

/** Revives the analysis panel after a window reload. */
export function registerAnalysisPanelSerializer(extensionUri: vscode.Uri, client: SidecarClient): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(AnalysisPanel.viewType, {
    async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown): Promise<void> {
      AnalysisPanel.revive(panel, extensionUri, client, state as SavedState | undefined);
    },
  });
}
