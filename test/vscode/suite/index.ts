/**
 * The entry VS Code loads as `extensionTestsPath` inside the extension host (bundled with mocha into one
 * file by scripts/test-vscode.mjs, so it needs nothing from node_modules). Runs the tdd-style suites of
 * extension_host_tests.ts and resolves when they pass; VS Code exits with its outcome.
 */
import Mocha from 'mocha';
import { defineExtensionHostTests } from './extension_host_tests';
import type { TddApi } from './extension_host_tests';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'tdd', color: false, timeout: 120000, reporter: 'spec' });
  // Bundled tests cannot be added as files: register them in the ui's context directly.
  const api = {} as TddApi;
  mocha.suite.emit('pre-require', api, 'extension_host_tests', mocha);
  defineExtensionHostTests(api);
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures > 0 ? reject(new Error(`${failures} extension-host test(s) failed`)) : resolve()));
  });
}
