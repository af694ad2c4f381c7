/**
 * The sidecar as seen from the extension: a vscode-languageclient LanguageClient talking to
 * `dist/sidecar.js` over Node IPC, the status-bar item that shows the sidecar's state, and the output
 * channel everything logs to.
 *
 * Restarts: when the sidecar dies it is restarted after a back-off (1 s, 2 s, 4 s ... 30 s), and its
 * cause (exit code or signal, the last lines it wrote to stderr) is shown. A failure that will repeat is
 * shown once and not restarted: a `fatal` status from the sidecar (no backend, broken install), or
 * MAX_CRASHES deaths within CRASH_WINDOW_MS.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as vscode from 'vscode';
import {
  CloseAction, ErrorAction, IPCMessageReader, IPCMessageWriter, LanguageClient, RevealOutputChannelOn, State,
} from 'vscode-languageclient/node';
import type { CloseHandlerResult, ErrorHandler, ErrorHandlerResult, LanguageClientOptions, MessageTransports } from 'vscode-languageclient/node';
import { SetTrustedNotification, StatusNotification, TrainProgressNotification } from '../sidecar/protocol';
import { backendText } from './status_text';
import type { InitializationOptions } from '../sidecar/protocol';

const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 3 * 60 * 1000;
const MAX_BACKOFF_MS = 30 * 1000;
/** Lines of the sidecar's stderr kept to explain a crash. */
const STDERR_TAIL_LINES = 20;

/** The state shown in the status bar: the sidecar's own status, or the client's view when it is down. */
export interface SidecarState extends StatusNotification.Params {
  /** Progress of a running training, e.g. "12/300". */
  progress?: string;
}

export class SidecarClient implements vscode.Disposable {
  readonly output: vscode.LogOutputChannel;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly progressEmitter = new vscode.EventEmitter<TrainProgressNotification.Params>();
  private readonly stateEmitter = new vscode.EventEmitter<SidecarState>();
  /** Every progress notification of every job (training, merge, export). */
  readonly onProgress = this.progressEmitter.event;
  readonly onState = this.stateEmitter.event;
  private readonly disposables: vscode.Disposable[] = [];

  private client: LanguageClient;
  private child: ChildProcess | undefined;
  private stderrTail: string[] = [];
  private lastExit = '';
  private crashes: number[] = [];
  private fatalShown = false;
  private disposed = false;
  private current: SidecarState = { state: 'starting' };
  /** Why the sidecar is not running and will not be restarted; undefined while it is (or will be). */
  private stoppedFor: string | undefined;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel('LoRA-XS', { log: true });
    this.statusItem = vscode.window.createStatusBarItem('loraxs.status', vscode.StatusBarAlignment.Left, 10);
    this.statusItem.name = 'LoRA-XS';
    this.statusItem.command = 'loraxs.showOutput';
    this.disposables.push(this.output, this.statusItem, this.progressEmitter, this.stateEmitter);
    this.client = this.createClient();
    this.showState({ state: 'starting' });
    this.disposables.push(vscode.workspace.onDidGrantWorkspaceTrust(() => {
      if (this.client.isRunning()) void this.client.sendNotification(SetTrustedNotification.type, { trusted: true });
    }));
  }

  /** The language client; check `running` first (requests to a stopped client fail). */
  get languageClient(): LanguageClient {
    return this.client;
  }

  get running(): boolean {
    return this.client.state === State.Running;
  }

  get state(): SidecarState {
    return this.current;
  }

  /** The sidecar's process id while it runs (for tests of the restart). */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /** Why commands cannot reach the sidecar, or undefined when they can. */
  unavailableReason(): string | undefined {
    if (this.running) return undefined;
    if (this.stoppedFor) return `the LoRA-XS sidecar is not running: ${this.stoppedFor}`;
    return 'the LoRA-XS sidecar is starting; try again in a moment';
  }

  /** Resolves true once the language client runs (at once if it does), false after `timeoutMs`. */
  whenRunning(timeoutMs = 60000): Promise<boolean> {
    if (this.running) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        sub.dispose();
        clearTimeout(timer);
        resolve(ok);
      };
      const sub = this.client.onDidChangeState((e) => {
        if (e.newState === State.Running) done(true);
      });
      const timer = setTimeout(() => done(this.running), timeoutMs);
    });
  }

  async start(): Promise<void> {
    await this.client.start();
  }

  log(line: string): void {
    this.output.appendLine(line);
  }

  private createClient(): LanguageClient {
    const options: LanguageClientOptions = {
      documentSelector: [
        { scheme: 'file', pattern: '**/*.loraxs.{yaml,yml}' },
        { scheme: 'untitled', language: 'yaml' },
      ],
      outputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: (): InitializationOptions => ({ trusted: vscode.workspace.isTrusted }),
      errorHandler: this.errorHandler(),
    };
    const client = new LanguageClient('loraxs', 'LoRA-XS', () => this.spawnSidecar(), options);
    client.onNotification(StatusNotification.type, (s) => this.onStatus(s));
    client.onNotification(TrainProgressNotification.type, (p) => this.onTrainProgress(p));
    return client;
  }

  /** Forks dist/sidecar.js with an IPC channel; keeps its stderr tail and exit cause for crash messages. */
  private async spawnSidecar(): Promise<MessageTransports> {
    const module = this.context.asAbsolutePath('dist/sidecar.js');
    this.stderrTail = [];
    this.lastExit = '';
    const child = fork(module, ['--node-ipc', `--clientProcessId=${process.pid}`], {
      cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? this.context.extensionPath,
      execArgv: [],
      silent: true,
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    });
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      this.output.append(d);
      this.stderrTail.push(...d.split('\n').filter((l) => l.trim()));
      this.stderrTail.splice(0, Math.max(0, this.stderrTail.length - STDERR_TAIL_LINES));
    });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => this.output.append(d));
    child.on('exit', (code, signal) => {
      this.lastExit = signal ? `killed by ${signal}` : `exit code ${code}`;
      this.log(`[client] sidecar (pid ${child.pid}) stopped: ${this.lastExit}`);
    });
    this.log(`[client] started sidecar pid ${child.pid}: ${process.execPath} ${module}`);
    return { reader: new IPCMessageReader(child), writer: new IPCMessageWriter(child) };
  }

  private errorHandler(): ErrorHandler {
    return {
      error: (_e, _m, count): ErrorHandlerResult => ({ action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true }),
      closed: async (): Promise<CloseHandlerResult> => {
        // The exit event can come just after the connection closes.
        await new Promise((r) => setTimeout(r, 200));
        const cause = this.crashCause();
        if (this.disposed) return { action: CloseAction.DoNotRestart, handled: true };
        if (this.current.fatal) {
          this.stop(this.current.message ?? cause);
          return { action: CloseAction.DoNotRestart, handled: true };
        }
        const now = Date.now();
        this.crashes = this.crashes.filter((t) => now - t < CRASH_WINDOW_MS);
        this.crashes.push(now);
        if (this.crashes.length >= MAX_CRASHES) {
          this.stop(`it stopped ${this.crashes.length} times within ${CRASH_WINDOW_MS / 60000} minutes; last: ${cause}`);
          return { action: CloseAction.DoNotRestart, handled: true };
        }
        const delay = Math.min(1000 * 2 ** (this.crashes.length - 1), MAX_BACKOFF_MS);
        const message = `The LoRA-XS sidecar stopped (${cause}); restarting in ${delay / 1000} s.`;
        this.log(`[client] ${message}`);
        void vscode.window.showWarningMessage(message, 'Show Output').then((a) => a && this.output.show(true));
        this.showState({ state: 'error', message: `${cause}; restarting` });
        await new Promise((r) => setTimeout(r, delay));
        if (this.disposed) return { action: CloseAction.DoNotRestart, handled: true };
        this.showState({ state: 'starting' });
        return { action: CloseAction.Restart, handled: true };
      },
    };
  }

  private crashCause(): string {
    const tail = this.stderrTail.slice(-3).join(' | ');
    return [this.lastExit || 'the connection closed', tail].filter(Boolean).join(': ');
  }

  /** No more restarts: shows the cause once. */
  private stop(why: string): void {
    this.stoppedFor = why;
    this.showState({ state: 'error', message: why, fatal: true });
    this.log(`[client] not restarting the sidecar: ${why}`);
    if (!this.fatalShown) {
      this.fatalShown = true;
      void vscode.window.showErrorMessage(`LoRA-XS: the sidecar cannot run: ${why}`, 'Show Output').then((a) => a && this.output.show(true));
    }
  }

  private onStatus(s: StatusNotification.Params): void {
    this.showState({ ...s, progress: s.state === 'busy' ? this.current.progress : undefined });
    if (s.fatal) {
      // The sidecar says it cannot work (e.g. no backend): show it once, and do not restart it.
      this.stop(s.message ?? 'the sidecar reported a fatal error');
    }
  }

  private onTrainProgress(p: TrainProgressNotification.Params): void {
    if (p.kind === 'step' && this.current.state === 'busy') {
      const total = p.record.total_steps;
      this.showState({ ...this.current, progress: total ? `${p.record.step}/${total}` : String(p.record.step) });
    }
    this.progressEmitter.fire(p);
  }

  private showState(s: SidecarState): void {
    this.current = s;
    const item = this.statusItem;
    const { short, long: backendLong } = backendText(s);
    const backend = short ? ` · ${short}` : '';
    item.backgroundColor = undefined;
    switch (s.state) {
      case 'starting':
        item.text = '$(loading~spin) LoRA-XS';
        item.tooltip = 'LoRA-XS: the sidecar is starting';
        break;
      case 'idle':
        item.text = `$(beaker) LoRA-XS${backend}`;
        item.tooltip = `LoRA-XS: idle${s.message ? ` (${s.message})` : ''}. Backend: ${backendLong}`;
        break;
      case 'busy':
        item.text = `$(sync~spin) LoRA-XS: ${s.message ?? 'busy'}${s.progress ? ` ${s.progress}` : ''}${backend}`;
        item.tooltip = `LoRA-XS: ${s.message ?? 'busy'}. Backend: ${backendLong}`;
        break;
      case 'error':
        item.text = '$(error) LoRA-XS';
        item.tooltip = `LoRA-XS: ${s.message ?? 'error'}`;
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        break;
    }
    item.show();
    this.stateEmitter.fire(s);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const child = this.child;
    try {
      if (this.client.needsStop()) await Promise.race([this.client.stop(2000), new Promise((r) => setTimeout(r, 3000))]);
    } catch {
      /* already stopped */
    }
    if (child && child.exitCode === null && child.signalCode === null) child.kill();
    for (const d of this.disposables) d.dispose();
  }
}
