// Bundles the three processes (extension, sidecar + CLI, webview) and the tests with esbuild.
// tsc only type-checks (npm run typecheck). The tfjs .wasm binaries are copied beside the sidecar
// bundle because esbuild does not copy them; sidecar/backend/choice.ts points the wasm backend at dist/wasm/.
import { build } from 'esbuild';
import { cpSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { copyWasmFiles } from './wasm_files.mjs';

const root = dirname(dirname(new URL(import.meta.url).pathname));
const common = { bundle: true, sourcemap: true, logLevel: 'warning', absWorkingDir: root };

copyWasmFiles(join(root, 'dist/wasm'));
cpSync(join(root, 'sidecar/config/loraxs.schema.json'), join(root, 'dist/loraxs.schema.json'));
// The native backend's set-up script ships beside the bundles for the "Set Up Native Backend" command.
cpSync(join(root, 'scripts/setup-native.mjs'), join(root, 'dist/setup-native.mjs'));

// Optional native backends: loaded at run time when installed, never bundled.
const optionalNative = ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'webgpu'];
// 'module' first: every tfjs package then resolves to its ESM build, so one copy of tfjs-core is bundled
// (the CommonJS and ESM builds would otherwise both be pulled in, with two Tensor classes).
const node = { ...common, platform: 'node', target: 'node20', format: 'cjs', mainFields: ['module', 'main'] };
await Promise.all([
  build({ ...node, entryPoints: { extension: 'extension/main.ts' }, outdir: 'dist', external: ['vscode'] }),
  build({ ...node, entryPoints: { sidecar: 'sidecar/server.ts', cli: 'sidecar/cli/main.ts' }, outdir: 'dist',
    external: optionalNative }),
  existsSync(join(root, 'webview')) && readdirSync(join(root, 'webview')).some((f) => f.endsWith('.ts'))
    ? build({ ...common, platform: 'browser', target: 'es2022', format: 'iife',
        entryPoints: readdirSync(join(root, 'webview')).filter((f) => f.endsWith('_panel.ts')).map((f) => `webview/${f}`),
        outdir: 'dist/webview' })
    : null,
]);

// Tests: one bundle per test file; dependencies stay in node_modules.
rmSync(join(root, 'dist-test'), { recursive: true, force: true });
const tests = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
if (tests.length) {
  await build({ ...node, entryPoints: tests, outdir: 'dist-test', external: optionalNative });
}
