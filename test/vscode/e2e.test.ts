/**
 * End to end, as a user: a fresh code-server with the packaged .vsix installed (nothing from the
 * repository is loaded: the extension runs from its own dist/, without node_modules), a workspace with a
 * tiny BERT checkpoint, data and two configs. In the browser: the bad key is flagged (squiggle and
 * Problems panel), the hover on `rank` gives the parameter count, "LoRA-XS: Fine-tune with LoRA-XS" from
 * the command palette trains, and the training panel draws the loss curve and the final metric. A
 * screenshot is saved to test/vscode/artifacts/.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeWorkspace } from '../workspace';
import {
  poll, panelFrame,
  artifactsDir, installVsix, launchBrowser, missingTools, openFile, runCommand, scratchDir, startCodeServer, vsixPath, waitForWorkbench,
} from './harness';
import { BAD_CONFIG, BAD_KEY, GOOD_CONFIG, LORAXS_PARAMS } from './workspace_configs';

test('end to end: install the .vsix, see the bad key and the parameter count, fine-tune from the palette, watch the panel',
  { skip: missingTools(), timeout: 10 * 60 * 1000 }, async () => {
    assert.ok(fs.existsSync(vsixPath), `${vsixPath} is missing: npm run test:vscode packages it`);
    const started = Date.now();
    const mark = (what: string) => console.log(`  [e2e ${((Date.now() - started) / 1000).toFixed(1)} s] ${what}`);
    const ws = makeWorkspace('bert', 'seq-cls');
    ws.config('bad', BAD_CONFIG);
    ws.config('good', GOOD_CONFIG);
    const scratch = scratchDir('loraxs-vscode-e2e-');
    const userDataDir = path.join(scratch, 'user');
    const extensionsDir = path.join(scratch, 'extensions');
    const installed = await installVsix(scratch, userDataDir, extensionsDir, vsixPath);
    assert.match(installed, /loraxs-studio.*successfully installed/i, installed);
    mark(`installed ${path.basename(vsixPath)} (${(fs.statSync(vsixPath).size / 1024 / 1024).toFixed(2)} MB)`);

    const server = await startCodeServer({ scratch, userDataDir, extensionsDir, folder: ws.dir });
    const browser = await launchBrowser();
    fs.mkdirSync(artifactsDir, { recursive: true });
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    try {
      await page.goto(`${server.url}/?folder=${encodeURIComponent(ws.dir)}`);
      await waitForWorkbench(page);
      mark('workbench up');

      // The bad key: a squiggle in the editor and a row in the Problems panel.
      await openFile(page, 'bad.loraxs.yaml');
      await page.locator('.monaco-editor .squiggly-error').first().waitFor({ state: 'attached', timeout: 90000 });
      await runCommand(page, 'View: Focus Problems');
      const problem = page.locator('.markers-panel .monaco-list-row', { hasText: `unknown key '${BAD_KEY}'` }).first();
      await problem.waitFor({ state: 'visible', timeout: 30000 });
      mark(`problem shown: ${(await problem.innerText()).replace(/\s+/g, ' ').slice(0, 160)}`);
      await page.screenshot({ path: path.join(artifactsDir, 'e2e-problems.png') });

      // The good config: the hover on `rank` gives the LoRA-XS parameter count.
      await openFile(page, 'good.loraxs.yaml');
      const rankToken = page.locator('.monaco-editor .view-line span', { hasText: /^rank$/ }).first();
      const hoverText = await poll('the hover with the parameter count', async () => {
        await page.mouse.move(0, 0);
        await rankToken.hover();
        const hover = page.locator('.monaco-hover', { hasText: 'trainable parameters' }).first();
        await hover.waitFor({ state: 'visible', timeout: 3000 });
        return hover.innerText();
      }, 60000);
      assert.match(hoverText, new RegExp(`LoRA-XS: ${LORAXS_PARAMS} trainable parameters`), hoverText);
      mark('hover shows the parameter count');
      await page.screenshot({ path: path.join(artifactsDir, 'e2e-hover.png') });
      await page.keyboard.press('Escape');
      await runCommand(page, 'View: Hide Panel');

      // Fine-tune from the palette; the training panel opens beside the config and draws the run.
      await runCommand(page, 'LoRA-XS: Fine-tune with LoRA-XS');
      mark('Fine-tune with LoRA-XS started');
      const frame = panelFrame(page);
      const points = await poll('loss points in the training panel', async () => {
        const n = Number(await frame.locator('#loss-chart').getAttribute('data-points', { timeout: 2000 }));
        return n > 0 ? n : undefined;
      }, 120000);
      mark(`the loss chart has ${points} point(s)`);
      const summary = frame.locator('.summary').first();
      await summary.waitFor({ state: 'visible', timeout: 180000 });
      const finalMetric = await summary.getAttribute('data-final-metric');
      assert.match(finalMetric ?? '', /accuracy=\d/, `the summary's final metric: ${finalMetric}`);
      const finalPoints = Number(await frame.locator('#loss-chart').getAttribute('data-points'));
      assert.equal(finalPoints, 12, 'one loss point per update: 48 rows / batch 8 × 2 epochs');
      // The chart drew something: the canvas holds non-background pixels.
      const inked = await frame.locator('#loss-chart').evaluate((c: HTMLCanvasElement) => {
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
      });
      assert.ok(inked > 500, `the loss canvas is drawn (${inked} painted pixels)`);
      const summaryText = await summary.innerText();
      assert.match(summaryText, /trainable parameters/);
      assert.match(summaryText, new RegExp(`LoRA-XS R: ${LORAXS_PARAMS}\\b`));
      mark(`final metric ${finalMetric}`);
      const shot = path.join(artifactsDir, 'e2e-training-panel.png');
      await page.screenshot({ path: shot });
      await summary.scrollIntoViewIfNeeded();
      const summaryShot = path.join(artifactsDir, 'e2e-training-summary.png');
      await page.screenshot({ path: summaryShot });
      console.log(`  screenshots: ${shot}, ${summaryShot}`);
      assert.ok(fs.existsSync(path.join(ws.dir, 'runs', 'good', 'metrics.jsonl')), 'the run wrote metrics.jsonl');

      // Hidden (another editor over it in its group: the page is torn down) and shown again: rebuilt from its state.
      const panelTab = page.locator('.tab', { hasText: 'LoRA-XS Training' }).first();
      await panelTab.click();
      await openFile(page, 'train.tsv');
      await frame.locator('#loss-chart').waitFor({ state: 'detached', timeout: 10000 });
      await panelTab.click();
      const restored = await poll('the restored panel', async () => {
        const n = Number(await frame.locator('#loss-chart').getAttribute('data-points', { timeout: 2000 }));
        return n === 12 && (await frame.locator('.summary').count()) === 1 ? n : undefined;
      }, 30000);
      mark(`hidden and shown again: ${restored} points and the summary`);

      // A window reload: the serializer revives the panel, which reloads the run from metrics.jsonl.
      await page.reload();
      await waitForWorkbench(page);
      // The tab comes back (possibly behind train.tsv, depending on when the layout was saved): show it.
      const revivedTab = page.locator('.tab', { hasText: 'LoRA-XS Training' }).first();
      await revivedTab.waitFor({ state: 'visible', timeout: 30000 });
      await revivedTab.click();
      const revived = await poll('the panel after a window reload', async () => {
        const n = Number(await panelFrame(page).locator('#loss-chart').getAttribute('data-points', { timeout: 2000 }));
        return n === 12 ? n : undefined;
      }, 60000);
      mark(`after a window reload: ${revived} points`);
      mark('done');
    } catch (e) {
      await page.screenshot({ path: path.join(artifactsDir, 'e2e-failure.png') }).catch(() => undefined);
      const panelText = await panelFrame(page).locator('body').innerText({ timeout: 2000 }).catch(() => '(no training panel)');
      console.log(`training panel:\n${panelText}`);
      console.log(`code-server output:\n${server.log().slice(-4000)}`);
      throw e;
    } finally {
      await browser.close();
      await server.stop();
    }
  });
