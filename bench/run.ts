/**
 * `npm run bench -- <suite> [--json] [--key=value ...]`: runs bench/<suite>.ts, prints its figures, and with `--json`
 * prints them as one JSON object on the last line of stdout.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Each suite module exports `run`, which reports progress with `log` and resolves with its figures. A suite that
 * measures Eddy as it is shipped also exports the Node flags it ships with (`nodeFlags`): the runner starts again
 * under them when this process lacks them.
 */
export interface BenchSuite {
  run(options: { args: Record<string, string>; log: (line: string) => void }): Promise<Record<string, unknown>>;
  nodeFlags?(args: Record<string, string>): readonly string[];
}

const here = dirname(fileURLToPath(import.meta.url));
const suites = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_'))
  .map((f) => f.slice(0, -3))
  .sort();

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const name = argv.find((a) => !a.startsWith('--'));
const args = Object.fromEntries(
  argv.filter((a) => a.startsWith('--') && a.includes('=')).map((a) => a.slice(2).split('=', 2) as [string, string]),
);

if (!name || !suites.includes(name)) {
  console.error(`usage: npm run bench -- <suite> [--json] [--key=value ...]\nsuites: ${suites.join(', ')}`);
  process.exit(2);
}

const suite = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as BenchSuite;
const missingFlags = (suite.nodeFlags?.(args) ?? []).filter((flag) => !process.execArgv.includes(flag));
if (missingFlags.length > 0) {
  const again = spawnSync(process.execPath, [...missingFlags, ...process.execArgv, fileURLToPath(import.meta.url), ...argv], { stdio: 'inherit' });
  process.exit(again.status ?? 1);
}
const result = await suite.run({ args, log: (line) => console.log(line) });
if (json) console.log(JSON.stringify(result));
else for (const [key, value] of Object.entries(result)) console.log(`${key}: ${JSON.stringify(value)}`);
process.exit(0);
