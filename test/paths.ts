/** Paths for tests. Tests are bundled into a temporary folder, so locate files from the repo root. */
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as os from 'node:os';

export const repoRoot = process.env.LORAXS_REPO_ROOT ?? path.resolve(__dirname, '..');
export const fixtures = path.join(repoRoot, 'test', 'fixtures');
/** ../shared of the workplace: present on developer machines, absent on a user's clone. */
export const shared = path.resolve(repoRoot, '..', 'shared');
export const stories260k = path.join(shared, 'models', 'stories260k');
export const glue = path.join(shared, 'data', 'glue');

/** A fresh temporary folder, removed when the process exits. */
export function tempDir(prefix = 'loraxs-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Reason to skip a test that needs ../shared, or false when it is present. */
export function needsShared(p: string): string | false {
  return fs.existsSync(p) ? false : `skipped: ${p} is absent (it exists only in the development workplace)`;
}
