#!/usr/bin/env node
// Reads .dev.vars the way `wrangler dev` does. wrangler parses the file with
// the `dotenv` package's parse() (dotenv 16.3.1, bundled inside wrangler 4.86,
// so it cannot be imported from node_modules); parseDotenv below follows the
// same rules, line for line:
//   - KEY=value or KEY: value, optionally prefixed with `export `;
//   - values in '…', "…" or `…` keep everything inside the quotes (including
//     `#` and newlines: quoted values may span lines); unquoted values end at
//     `#` (a comment) and are trimmed;
//   - in double quotes only, \n and \r become a newline and a carriage return
//     (no other escapes: \" stays \");
//   - CRLF line ends are accepted; a later line overrides an earlier one;
//   - no ${VAR} expansion.
// tests/tools/dev-vars.test.mjs checks it against the parser inside the
// installed wrangler.
//
// CLI (used by scripts/dev.sh): node scripts/dev-vars.mjs NAME [FILE]
// prints the value of NAME in FILE (default .dev.vars), without a newline;
// exits 1 with a message when the file or the name is missing.

import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const LINE = /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/gm;

/** dotenv's parse(): the text of a .dev.vars file to { NAME: value }. */
export function parseDotenv(src) {
  const obj = {};
  const lines = String(src).replace(/\r\n?/gm, '\n');
  const re = new RegExp(LINE.source, LINE.flags);
  let match;
  while ((match = re.exec(lines)) != null) {
    const key = match[1];
    let value = (match[2] || '').trim();
    const maybeQuote = value[0];
    value = value.replace(/^(['"`])([\s\S]*)\1$/gm, '$2');
    if (maybeQuote === '"') {
      value = value.replace(/\\n/g, '\n');
      value = value.replace(/\\r/g, '\r');
    }
    obj[key] = value;
  }
  return obj;
}

/** The variables of a .dev.vars file. */
export function readDevVars(file = '.dev.vars') {
  return parseDotenv(readFileSync(file, 'utf8'));
}

export { LINE as DOTENV_LINE };

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [name, file = '.dev.vars'] = process.argv.slice(2);
  if (!name) {
    console.error('usage: node scripts/dev-vars.mjs NAME [FILE]');
    process.exit(2);
  }
  let vars;
  try {
    vars = readDevVars(file);
  } catch (e) {
    console.error(`cannot read ${file}: ${e.message}`);
    process.exit(1);
  }
  if (!Object.hasOwn(vars, name)) {
    console.error(`${name} is not set in ${file}`);
    process.exit(1);
  }
  process.stdout.write(vars[name]);
}
