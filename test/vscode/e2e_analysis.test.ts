/**
 * End to end, as a user: the singular-value analysis panel in a fresh code-server with the packaged .vsix.
 * Before the server starts, the CLI trains a LoRA-XS adapter on the tiny BERT fixture (a classification
 * task with one cue word per sentence, so ablations move the accuracy). In the browser: open the config,
 * "LoRA-XS: Show Singular-Value Analysis" from the palette, a per-layer retention sweep run from the panel's
 * form with the adapter, then the spectra. Checked against the reports the sweep wrote to disk: the heatmap
 * has one coloured cell per layer × module type, as many colours as distinct values, hovering a cell shows
 * its numbers; the r_frac lines and the spectrum plot hold every point. Screenshots go to
 * test/vscode/artifacts/e2e-analysis-*.png.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Locator } from 'playwright-core';
import { repoRoot } from '../paths';
import { makeWorkspace, WORDS } from '../workspace';
import {
  poll, panelFrame,
  artifactsDir, installVsix, launchBrowser, missingTools, openFile, runCommand, scratchDir, startCodeServer, vsixPath, waitForWorkbench,
} from './harness';
import type { AblationReport, SpectraReport } from '../../sidecar/records';

const MODULES = ['query', 'key', 'value', 'attention.output.dense', 'intermediate.dense', 'output.dense'];
const LAYERS = 2;
const FRACTIONS = [0, 0.5, 1];
const EVAL_LIMIT = 48;

/** All six BERT module types at rank 8; 8 epochs on 96 sentences take a few seconds with wasm. */
const ANALYSIS_CONFIG = `model: model
task: classification
data:
  train: cues_train.tsv
  validation: cues_dev.tsv
  text: sentence
  label: label
adapter:
  rank: 8
  targets: [${MODULES.join(', ')}]
training:
  epochs: 8
  batch_size: 8
  max_length: 16
  lr: 0.02
output: runs/analysis
`;

/** Sentences of filler words with one cue word that gives the label (deterministic). */
function cueSentences(n: number, seed: number): string {
  let x = seed >>> 0;
  const next = (): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  const positive = ['good', 'great', 'fun', 'love', 'funny', 'smart', 'warm', 'bright', 'best', 'laugh'];
  const negative = ['bad', 'awful', 'dull', 'hate', 'boring', 'slow', 'silly', 'cold', 'worst', 'sleep'];
  const filler = WORDS.filter((w) => !positive.includes(w) && !negative.includes(w)).slice(0, 24);
  const rows = ['sentence\tlabel'];
  for (let i = 0; i < n; i++) {
    const label = next() < 0.5 ? 0 : 1;
    const words = Array.from({ length: 3 + Math.floor(next() * 6) }, () => pick(filler));
    words.splice(Math.floor(next() * (words.length + 1)), 0, pick(label ? positive : negative));
    rows.push(`${words.join(' ')}\t${label}`);
  }
  return rows.join('\n') + '\n';
}

async function numberAttr(l: Locator, name: string): Promise<number> {
  return Number(await l.getAttribute(name, { timeout: 2000 }));
}

/** Painted (non-transparent) pixels of a canvas. */
async function inked(canvas: Locator): Promise<number> {
  return canvas.evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
}

test('end to end: the singular-value analysis panel runs a retention sweep and draws the heatmap, the r_frac lines and the spectra',
  { skip: missingTools(), timeout: 5 * 60 * 1000 }, async () => {
    assert.ok(fs.existsSync(vsixPath), `${vsixPath} is missing: npm run test:vscode packages it`);
    const started = Date.now();
    const mark = (what: string) => console.log(`  [e2e-analysis ${((Date.now() - started) / 1000).toFixed(1)} s] ${what}`);
    const ws = makeWorkspace('bert', 'seq-cls');
    ws.write('cues_train.tsv', cueSentences(96, 11));
    ws.write('cues_dev.tsv', cueSentences(EVAL_LIMIT, 12));
    const configFile = ws.config('analysis', ANALYSIS_CONFIG);

    // The adapter under study, trained with the CLI before the server starts.
    const train = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), 'train', configFile], { cwd: ws.dir, encoding: 'utf8' });
    assert.equal(train.status, 0, `loraxs train failed:\n${train.stdout}\n${train.stderr}`);
    const runDir = path.join(ws.dir, 'runs', 'analysis');
    assert.ok(fs.existsSync(path.join(runDir, 'adapter.safetensors')) && fs.existsSync(path.join(runDir, 'head.safetensors')), 'the CLI saved the adapter and its head');
    mark('adapter trained with the CLI');

    const scratch = scratchDir('loraxs-vscode-e2e-analysis-');
    const userDataDir = path.join(scratch, 'user');
    const extensionsDir = path.join(scratch, 'extensions');
    const installed = await installVsix(scratch, userDataDir, extensionsDir, vsixPath);
    assert.match(installed, /loraxs-studio.*successfully installed/i, installed);
    const server = await startCodeServer({ scratch, userDataDir, extensionsDir, folder: ws.dir });
    const browser = await launchBrowser();
    fs.mkdirSync(artifactsDir, { recursive: true });
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const frame = panelFrame(page);
    try {
      await page.goto(`${server.url}/?folder=${encodeURIComponent(ws.dir)}`);
      await waitForWorkbench(page);
      const browserStarted = Date.now();
      mark('workbench up');

      // The config, with its code lenses (the sidecar answers), then the palette command.
      await openFile(page, 'analysis.loraxs.yaml');
      await page.locator('.monaco-editor .codelens-decoration a', { hasText: 'Ablate' }).first().waitFor({ state: 'visible', timeout: 90000 });
      await runCommand(page, 'LoRA-XS: Show Singular-Value Analysis');
      await page.locator('.tab', { hasText: 'LoRA-XS Singular-Value Analysis' }).first().waitFor({ state: 'visible', timeout: 30000 });
      await frame.locator('h1', { hasText: 'analysis.loraxs.yaml' }).waitFor({ state: 'visible', timeout: 30000 });
      mark('analysis panel open');

      // The config editor closes so the panel gets the window's width (it opened beside it).
      await page.locator('.tab', { hasText: 'analysis.loraxs.yaml' }).first().click({ button: 'middle' });
      await page.locator('.tab', { hasText: 'analysis.loraxs.yaml' }).waitFor({ state: 'detached', timeout: 10000 });

      // A per-layer retention sweep with the adapter (a path relative to the config), from the form.
      const field = (label: string) => frame.locator('.controls label', { hasText: label }).locator('input');
      // The panel may still re-render its form from saved reports just after opening: fill until the
      // values stick.
      const form: Array<[string, string]> = [['adapter', 'runs/analysis'], ['fractions', FRACTIONS.join(',')], ['eval limit', String(EVAL_LIMIT)]];
      await poll('the form keeps its values', async () => {
        await frame.locator('.controls label', { hasText: 'analysis' }).locator('select').selectOption('retention');
        for (const [label, value] of form) await field(label).fill(value);
        await new Promise((r) => setTimeout(r, 500));
        for (const [label, value] of form) if ((await field(label).inputValue()) !== value) return undefined;
        return true;
      }, 20000);
      assert.equal(await field('per layer').isChecked(), true, 'per layer is on by default');
      await frame.locator('.controls button', { hasText: 'Run' }).click();
      mark('retention sweep started from the panel');

      const heatmap = frame.locator('canvas#heatmap');
      // Finished: the report is on disk, the status line is gone, and the heatmap is drawn from it.
      const reportFile = path.join(runDir, 'analysis', 'retention.json');
      await poll('the retention report', async () => (fs.existsSync(reportFile) ? true : undefined), 90000);
      await frame.locator('p.status').waitFor({ state: 'detached', timeout: 30000 });
      const report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as AblationReport;
      assert.equal(report.adapter, runDir, 'the adapter path typed in the panel is resolved against the config folder');
      assert.equal(report.evalExamples, EVAL_LIMIT);
      assert.deepEqual(report.modules, MODULES);
      assert.deepEqual(report.fractions, FRACTIONS);
      assert.equal(report.results.length, MODULES.length * (LAYERS + 1) * 3 * FRACTIONS.length, 'module × (all layers + each layer) × region × fraction');
      await frame.locator('p.error').waitFor({ state: 'detached', timeout: 1000 }).catch(() => undefined);
      assert.equal(await frame.locator('p.error').count(), 0, 'no error in the panel');
      mark(`retention sweep finished: ${report.results.length} rows, baseline ${report.metric} ${report.baseline}`);

      // The heatmap shows the default view: region top, the first fraction strictly between 0 and 1.
      const cells = await poll('heatmap cells', async () => {
        const n = await numberAttr(heatmap, 'data-cells');
        return n > 0 ? n : undefined;
      }, 10000);
      assert.equal(cells, MODULES.length * LAYERS, 'one cell per module type × layer');
      assert.equal(await numberAttr(heatmap, 'data-modules'), MODULES.length);
      assert.equal(await numberAttr(heatmap, 'data-layers'), LAYERS);
      const shown = report.results.filter((r) => r.layer !== null && r.region === 'top' && r.fraction === 0.5);
      assert.equal(shown.length, cells);
      const distinct = new Set(shown.map((r) => r.value)).size;
      assert.ok(distinct >= 2, `the ablations move the metric (${distinct} distinct values at top 0.5), so the colours can be told apart`);
      assert.equal(await numberAttr(heatmap, 'data-colours'), distinct, 'one colour per distinct value');
      assert.ok(await inked(heatmap) > 5000, 'the heatmap canvas is painted');

      // Hover a cell: its module, layer, region, fraction, value, the unablated value and the all-layer value.
      const geom = {
        left: await numberAttr(heatmap, 'data-left'), top: await numberAttr(heatmap, 'data-top'),
        w: await numberAttr(heatmap, 'data-cell-width'), h: await numberAttr(heatmap, 'data-cell-height'),
      };
      const [mi, layer] = [MODULES.indexOf('value'), 1];
      const tip = frame.locator('#tooltip');
      // Move onto the cell from outside, so the canvas gets a mousemove even if the pointer was there already.
      await poll('the heatmap tooltip', async () => {
        await page.mouse.move(0, 0);
        await heatmap.hover({ position: { x: geom.left + layer * geom.w + geom.w / 2, y: geom.top + mi * geom.h + geom.h / 2 } });
        return tip.waitFor({ state: 'visible', timeout: 1500 }).then(() => true);
      }, 10000);
      const tipText = await tip.innerText();
      const cell = shown.find((r) => r.module === 'value' && r.layer === layer)!;
      const all = report.results.find((r) => r.module === 'value' && r.layer === null && r.region === 'top' && r.fraction === 0.5)!;
      assert.match(tipText, /^value, layer 1$/m, tipText);
      assert.ok(tipText.includes(`top 0.5: ${report.metric} ${cell.value.toFixed(4)}`), tipText);
      assert.ok(tipText.includes(`unablated: ${report.baseline.toFixed(4)}`), tipText);
      assert.ok(tipText.includes(`change: ${(cell.value - report.baseline).toFixed(4)}`), tipText);
      assert.ok(tipText.includes(`all layers at once: ${all.value.toFixed(4)}`), tipText);
      mark(`hover: ${tipText.replace(/\n/g, ' | ')}`);
      const heatShot = path.join(artifactsDir, 'e2e-analysis-heatmap.png');
      await page.screenshot({ path: heatShot });

      // The lines of the metric against r_frac: every (module, region) series with a point per fraction.
      const lines = frame.locator('canvas#lines-chart');
      assert.equal(await numberAttr(lines, 'data-series'), MODULES.length * 3);
      assert.equal(await numberAttr(lines, 'data-points'), MODULES.length * 3 * FRACTIONS.length);
      assert.ok(await inked(lines) > 2000, 'the r_frac chart is painted');

      // Spectra of the adapted model, from the same form.
      await page.mouse.move(0, 0);
      await frame.locator('.controls label', { hasText: 'analysis' }).locator('select').selectOption('spectra');
      await frame.locator('.controls button', { hasText: 'Run' }).click();
      const spectraFile = path.join(runDir, 'analysis', 'spectra.json');
      await poll('the spectra report', async () => (fs.existsSync(spectraFile) ? true : undefined), 60000);
      const spectra = frame.locator('canvas#spectra-chart');
      const spectraReport = JSON.parse(fs.readFileSync(spectraFile, 'utf8')) as SpectraReport;
      const first = spectraReport.entries.filter((e) => e.module === spectraReport.modules[0]);
      assert.equal(first.length, LAYERS);
      const spectraPoints = await poll('the spectrum plot', async () => {
        const n = await numberAttr(spectra, 'data-points');
        return n > 0 ? n : undefined;
      }, 30000);
      assert.equal(spectraPoints, first.reduce((n, e) => n + e.singularValues.length, 0), 'every singular value of each layer of the first module type');
      assert.ok(await inked(spectra) > 2000, 'the spectrum canvas is painted');
      assert.ok(first.every((e) => e.deltaRatio !== null && e.deltaRatio > 0), 'the adapter gives ‖ΔW‖/‖W‖ > 0');
      assert.equal(await frame.locator('table tr').count(), 1 + LAYERS, 'the spectra table: header and one row per layer');
      // The heatmap is still there (both reports shown).
      assert.equal(await numberAttr(heatmap, 'data-cells'), cells);
      await spectra.scrollIntoViewIfNeeded();
      const spectraShot = path.join(artifactsDir, 'e2e-analysis-spectra.png');
      await page.screenshot({ path: spectraShot });
      const seconds = (Date.now() - browserStarted) / 1000;
      console.log(`  screenshots: ${heatShot}, ${spectraShot}`);
      mark(`done (${seconds.toFixed(1)} s in the browser after the workbench showed)`);
      assert.ok(seconds < 60, `the browser part takes under a minute (${seconds.toFixed(1)} s)`);
    } catch (e) {
      await page.screenshot({ path: path.join(artifactsDir, 'e2e-analysis-failure.png') }).catch(() => undefined);
      const panelText = await frame.locator('body').innerText({ timeout: 2000 }).catch(() => '(no analysis panel)');
      console.log(`analysis panel:\n${panelText}`);
      console.log(`code-server output:\n${server.log().slice(-4000)}`);
      throw e;
    } finally {
      await browser.close();
      await server.stop();
    }
  });
