/**
 * The HTML shell of a webview panel: a Content-Security-Policy that allows only the nonce'd script and
 * the webview's own resources, the panel's stylesheet and its bundled script from dist/webview/. The body
 * is static markup; data reaches the page only as messages (set with textContent there).
 */
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

export interface PanelPage {
  /** Bundle name in dist/webview/: `<name>.js` and `<name>.css`. */
  name: string;
  title: string;
  /** Static markup (no data from configs, models or files). */
  body: string;
}

export function panelHtml(webview: vscode.Webview, extensionUri: vscode.Uri, page: PanelPage): string {
  const asset = (f: string) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', f)).toString();
  const nonce = randomBytes(18).toString('base64');
  const csp = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${webview.cspSource}`,
    `img-src ${webview.cspSource} data:`,
    `font-src ${webview.cspSource}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${asset(`${page.name}.css`)}">
<title>${page.title}</title>
</head>
<body>
${page.body}
<script nonce="${nonce}" src="${asset(`${page.name}.js`)}"></script>
</body>
</html>`;
}
