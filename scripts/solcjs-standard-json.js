#!/usr/bin/env node
// A native-solc look-alike over the pinned npm `solc` (solcjs), so py-solc-x can drive it
// offline: `--version` prints "Version: <v>", `--standard-json` reads the input JSON on
// stdin and prints only the output JSON (the solcjs CLI prints an SMT notice first).
// Imports resolve from the project's node_modules, then from contracts/.
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const solc = require(require.resolve('solc', { paths: [root] }));

function findImports(importPath) {
  for (const base of [path.join(root, 'node_modules'), path.join(root, 'contracts'), root]) {
    const candidate = path.join(base, importPath);
    if (candidate.startsWith(base) && fs.existsSync(candidate)) {
      return { contents: fs.readFileSync(candidate, 'utf8') };
    }
  }
  return { error: `File not found: ${importPath}` };
}

const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
} else if (args.includes('--standard-json')) {
  const input = fs.readFileSync(0, 'utf8');
  process.stdout.write(solc.compile(input, { import: findImports }));
} else {
  process.stderr.write('usage: solcjs-standard-json.js --version | --standard-json < input.json\n');
  process.exit(2);
}
