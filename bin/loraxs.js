#!/usr/bin/env node
// The `loraxs` command line: the same engine as the VS Code sidecar, headless.
const path = require('node:path');
const fs = require('node:fs');
const cli = path.join(__dirname, '..', 'dist', 'cli.js');
if (!fs.existsSync(cli)) {
  process.stderr.write('loraxs: the CLI is not built yet; run `npm run build` in ' + path.dirname(__dirname) + '\n');
  process.exit(2);
}
require(cli).run(process.argv.slice(2));
