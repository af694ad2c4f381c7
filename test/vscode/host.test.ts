/**
 * Runs the mocha suites of suite/extension_host_tests.ts inside a real VS Code extension host: code-server
 * started with the smoke-test driver, opened by headless Chromium on a URL whose payload names the
 * repository as extensionDevelopmentPath and the bundled suite (scripts/test-vscode.mjs builds it) as
 * extensionTestsPath. The run's console output and exit code come back through codeAutomationLog and
 * codeAutomationExit, which the page calls and playwright exposes.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { format } from 'node:util';
import { repoRoot } from '../paths';
import { makeWorkspace } from '../workspace';
import { launchBrowser, missingTools, scratchDir, startCodeServer } from './harness';
import { BAD_CONFIG, GOOD_CONFIG } from './workspace_configs';

const suiteBundle = process.env.LORAXS_VSCODE_SUITE ?? path.join(repoRoot, '.cache', 'vscode-test', 'build', 'suite', 'index.js');

test('the extension-host mocha suites pass inside code-server', { skip: missingTools(), timeout: 10 * 60 * 1000 }, async () => {
  assert.ok(fs.existsSync(suiteBundle), `${suiteBundle} is missing: run npm run test:vscode (it bundles the suite)`);
  assert.ok(fs.existsSync(path.join(repoRoot, 'dist', 'extension.js')), 'dist/extension.js is missing: npm run build');
  const ws = makeWorkspace('bert', 'seq-cls');
  ws.config('good', GOOD_CONFIG);
  ws.config('bad', BAD_CONFIG);
  const scratch = scratchDir('loraxs-vscode-host-');
  const started = Date.now();
  const server = await startCodeServer({
    scratch, userDataDir: path.join(scratch, 'user'), extensionsDir: path.join(scratch, 'extensions'), folder: ws.dir, smokeTestDriver: true,
  });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const lines: string[] = [];
    let exit: (code: number) => void = () => undefined;
    const exited = new Promise<number>((resolve) => (exit = resolve));
    await page.exposeFunction('codeAutomationLog', (type: string, args: unknown[]) => {
      // Console calls of the extension host (mocha's spec reporter among them) and of the workbench.
      const line = format(...(Array.isArray(args) ? args : [args]));
      lines.push(line);
      if (/✔|passing|failing|pending|^\s*\d+\) /.test(line) || type === 'error') process.stdout.write(`  [host ${type}] ${line}\n`);
    });
    await page.exposeFunction('codeAutomationExit', (code: number) => exit(code));

    // The remote authority the workbench uses for this server, from its configuration meta tag.
    await page.goto(`${server.url}/?folder=${encodeURIComponent(ws.dir)}`);
    const config = await page.locator('meta#vscode-workbench-web-configuration').getAttribute('data-settings');
    const authority = (JSON.parse(config ?? '{}') as { remoteAuthority?: string }).remoteAuthority ?? `127.0.0.1:${server.port}`;
    const remote = (p: string) => `vscode-remote://${authority}${p}`;
    const payload = JSON.stringify([['extensionDevelopmentPath', remote(repoRoot)], ['extensionTestsPath', remote(suiteBundle)]]);
    await page.goto(`${server.url}/?folder=${encodeURIComponent(ws.dir)}&payload=${encodeURIComponent(payload)}`);

    const timeout = new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`the suites did not finish within 8 minutes; output:\n${lines.join('\n')}\ncode-server:\n${server.log()}`)), 8 * 60 * 1000).unref());
    const code = await Promise.race([exited, timeout]);
    console.log(`extension-host suites finished with code ${code} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(code, 0, `the extension-host suites failed; output:\n${lines.join('\n')}`);
    assert.ok(lines.some((l) => /passing/.test(l)), `mocha reported passing tests:\n${lines.join('\n')}`);
  } finally {
    await browser.close();
    await server.stop();
  }
});
