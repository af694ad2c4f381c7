/**
 * "LoRA-XS: Set Up Native Backend": asks for the CPU or the GPU (CUDA 12) build, runs the same script as
 * `npm run setup:native [-- --gpu]` (shipped as dist/setup-native.mjs) with the runtime that runs the
 * sidecar, shows its steps as progress, and kills it on cancel. A .vsix cannot carry libtensorflow (about
 * 850 MB; 4.3 GB with the CUDA libraries), so it is built on the user's machine into
 * ~/.cache/loraxs-studio/native (or the checkout's .cache/native when the extension runs from one), where
 * the sidecar looks for it (the GPU build first). The sidecar chooses its backend once, so the window is
 * reloaded afterwards.
 */
import * as vscode from 'vscode';
import { fork } from 'node:child_process';

export const SETUP_NATIVE_COMMAND = 'loraxs.setupNative';

interface VariantPick extends vscode.QuickPickItem {
  args: string[];
}

const VARIANTS: VariantPick[] = [
  { label: 'CPU', description: 'TensorFlow for the CPU', detail: 'Downloads about 274 MB from PyPI; about 850 MB installed.', args: [] },
  {
    label: 'GPU (CUDA 12, Linux x86-64)', description: 'TensorFlow with CUDA; needs an NVIDIA driver for CUDA 12',
    detail: 'Downloads about 2.5 GB from PyPI (tensorflow and its nvidia-*-cu12 wheels); about 4.3 GB installed. Runs on the CPU when no GPU is visible.',
    args: ['--gpu'],
  },
];

interface ProgressLine {
  step: string;
  message?: string;
  dir?: string;
  tfVersion?: string;
  cached?: boolean;
}

export function registerNativeSetup(context: vscode.ExtensionContext, log: (line: string) => void): vscode.Disposable {
  return vscode.commands.registerCommand(SETUP_NATIVE_COMMAND, async () => {
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      void vscode.window.showErrorMessage(`The native TensorFlow backend can be set up on Linux x86-64 only (this is ${process.platform}-${process.arch}); the WebAssembly backend stays in use.`);
      return;
    }
    const variant = await vscode.window.showQuickPick(VARIANTS, { title: 'LoRA-XS: native TensorFlow backend', placeHolder: 'Which TensorFlow build to set up' });
    if (!variant) return;
    const script = context.asAbsolutePath('dist/setup-native.mjs');
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `LoRA-XS: native backend (${variant.args.length ? 'GPU' : 'CPU'})`, cancellable: true },
      (progress, token) => new Promise<ProgressLine | Error>((resolve) => {
        const child = fork(script, ['--json-progress', ...variant.args], { execArgv: [], silent: true, env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' } });
        let last: ProgressLine | undefined;
        let buffered = '';
        child.stdout?.setEncoding('utf8');
        child.stdout?.on('data', (d: string) => {
          buffered += d;
          const lines = buffered.split('\n');
          buffered = lines.pop() ?? '';
          for (const line of lines) {
            try {
              last = JSON.parse(line) as ProgressLine;
              if (last.message) progress.report({ message: last.message });
            } catch {
              log(line);
            }
          }
        });
        child.stderr?.setEncoding('utf8');
        child.stderr?.on('data', (d: string) => d.split('\n').filter((l) => l.trim()).forEach(log));
        token.onCancellationRequested(() => child.kill('SIGTERM'));
        child.on('error', (e) => resolve(e));
        child.on('exit', (code, signal) => {
          if (last?.step === 'result') resolve(last);
          else if (token.isCancellationRequested) resolve(new Error('cancelled'));
          else resolve(new Error(last?.step === 'error' ? last.message ?? 'failed' : `the set-up stopped (${signal ?? `exit code ${code}`})`));
        });
      }),
    );
    if (result instanceof Error) {
      if (result.message !== 'cancelled') void vscode.window.showErrorMessage(`Native backend set-up failed: ${result.message}`);
      return;
    }
    const pick = await vscode.window.showInformationMessage(
      `Native TensorFlow ${result.tfVersion ?? ''} is ${result.cached ? 'already set up' : 'ready'} (${result.dir}). Reload the window so the sidecar uses it.`, 'Reload Window');
    if (pick === 'Reload Window') await vscode.commands.executeCommand('workbench.action.reloadWindow');
  });
}
