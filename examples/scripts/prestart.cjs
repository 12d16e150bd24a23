// Runs before `npm start` in an example folder (cwd = that folder).
// 1. Fails early, with a hint, if baton itself has not been built yet.
// 2. Creates .env from .env.example on first run, so `npm install && npm start`
//    is all it takes. .env is yours to edit afterwards: baton re-reads it on
//    every reload (SIGHUP / `baton reload`); it is git-ignored.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const primary = path.resolve('node_modules', 'baton', 'dist', 'primary.js');
if (!fs.existsSync(primary)) {
  console.error(
    `baton is not built (missing ${primary}).\n` +
      'Build it once from the repository root:  npm ci && npm run build\n' +
      'then, in this folder:                     npm install && npm start'
  );
  process.exit(1);
}

if (!fs.existsSync('.env') && fs.existsSync('.env.example')) {
  fs.copyFileSync('.env.example', '.env');
  console.error('created .env from .env.example');
}
