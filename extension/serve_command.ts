/**
 * "LoRA-XS: Serve Adapters": starts `loraxs serve --config CONFIG` (the config's base model; the folder that
 * holds its output folder as the adapters folder, so every run beside it is served) as its own process with
 * the runtime that runs the extension host, on 127.0.0.1 and a free port. The status bar shows the URL
 * while it runs; clicking it, or "LoRA-XS: Stop Serving Adapters", ends the process. Its log goes to the
 * LoRA-XS output channel. Only in a trusted workspace (the server reads models).
 */
import * as vscode from 'vscode';
import * as path from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';

export const SERVE_COMMAND = 'loraxs.serveAdapters';
export const STOP_SERVE_COMMAND = 'loraxs.stopServing';

const CONFIG_GLOB = '**/*.loraxs.{yaml,yml}';

async function pickConfig(arg: unknown): Promise<vscode.Uri | undefined> {
  if (arg instanceof vscode.Uri) return arg;
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active && /\.loraxs\.ya?ml$/.test(active.path)) return active;
  const found = await vscode.workspace.findFiles(CONFIG_GLOB, '**/node_modules/**', 200);
  if (found.length <= 1) return found[0];
  const items = found.map((uri) => ({ label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), uri }));
  return (await vscode.window.showQuickPick(items, { title: 'LoRA-XS: serve the adapters of which config?' }))?.uri;
}

export function registerServeCommands(context: vscode.ExtensionContext, log: (line: string) => void): vscode.Disposable {
  let server: ChildProcess | undefined;
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 90);
  status.command = STOP_SERVE_COMMAND;

  const stop = (): void => {
    if (server && server.exitCode === null) server.kill('SIGTERM');
  };

  const start = vscode.commands.registerCommand(SERVE_COMMAND, async (arg?: unknown) => {
    if (!vscode.workspace.isTrusted) {
      void vscode.window.showErrorMessage('LoRA-XS: serving adapters reads models; trust this workspace first.');
      return;
    }
    if (server && server.exitCode === null) {
      void vscode.window.showInformationMessage(`LoRA-XS: already serving at ${status.tooltip ?? ''}`, 'Stop').then((p) => p && stop());
      return;
    }
    const uri = await pickConfig(arg);
    if (!uri) {
      void vscode.window.showInformationMessage('LoRA-XS: no *.loraxs.yaml config to serve.');
      return;
    }
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
    if (doc?.isDirty) await doc.save();
    const child = fork(context.asAbsolutePath('dist/cli.js'), ['serve', '--config', uri.fsPath, '--port', '0'], {
      silent: true, execArgv: [], cwd: path.dirname(uri.fsPath), env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    });
    server = child;
    status.text = '$(loading~spin) LoRA-XS: starting server…';
    status.tooltip = undefined;
    status.show();
    let out = '';
    let lastError = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      out += d;
      d.split('\n').filter((l) => l.trim()).forEach(log);
      const m = /listening on (http:\/\/\S+?)[\s(]/.exec(out);
      if (m && !status.tooltip) {
        status.text = `$(server) LoRA-XS: ${m[1]}`;
        status.tooltip = `${m[1]}: OpenAI-compatible (/v1/completions, /v1/chat/completions, /v1/classify). Click to stop.`;
      }
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => d.split('\n').filter((l) => l.trim()).forEach((l) => {
      lastError = l;
      log(l);
    }));
    child.on('exit', (code, signal) => {
      if (server === child) server = undefined;
      status.hide();
      if (code !== 0 && signal !== 'SIGTERM') void vscode.window.showErrorMessage(`LoRA-XS: the adapter server stopped (${signal ?? `exit code ${code}`}): ${lastError}`);
    });
  });
  const stopCommand = vscode.commands.registerCommand(STOP_SERVE_COMMAND, stop);
  return vscode.Disposable.from(start, stopCommand, status, { dispose: stop });
}
