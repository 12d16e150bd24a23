// @ts-check
// Keeps the docs honest: every config key, default and exit code in the
// README and .env.example comes from the same table the code uses.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KEYS } from '../dist/config.js';
import { EXIT } from '../dist/primary/supervisor.js';
import { ROOT } from './helpers/baton.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const example = readFileSync(join(ROOT, '.env.example'), 'utf8');

for (const [key, spec] of Object.entries(KEYS)) {
  test(`${key} is documented with its default in README.md and .env.example`, (t) => {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${key}\` |`));
    t.truthy(row, `README has a row for ${key}`);
    const def = spec.default();
    if (key === 'WORKERS') t.regex(String(row), /number of CPUs/);
    else if (def === '') t.regex(String(row), /\*\(empty/);
    else t.true(String(row).includes(`| \`${def}\` |`), `README default for ${key} is ${def}: ${row}`);
    const line = example.split('\n').find((l) => new RegExp(`^#? ?${key}=`).test(l));
    t.truthy(line, `.env.example has ${key}`);
    if (key !== 'WORKERS') t.is(String(line).replace(/^# ?/, '').slice(key.length + 1).replace(/^"|"$/g, ''), def);
  });
}

test('every exit code the code uses is in the README table', (t) => {
  for (const code of Object.values(EXIT)) t.regex(readme, new RegExp(`^\\| ${code} \\|`, 'm'), `exit code ${code}`);
});

test('.env.example parses and loads as a valid config', async (t) => {
  const { loadConfig } = await import('../dist/config.js');
  const result = loadConfig({ envFile: join(ROOT, '.env.example'), environment: {} });
  t.true(result.ok, JSON.stringify(!result.ok && result.errors));
});
