import { parseArgs } from 'node:util';
import { formatTopology } from '../operators/pipeline.js';
import { catalogue } from './catalogue.js';

export async function main(args: readonly string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...args],
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
  });
  const names = Object.keys(catalogue);
  const [name] = positionals;
  if (values.help || !name) {
    console.log(`usage: eddy describe <pipeline> [--json]\npipelines: ${names.join(', ')}`);
    return values.help ? 0 : 2;
  }
  const build = catalogue[name];
  if (!build) {
    console.error(`eddy describe: no pipeline named '${name}'; pipelines: ${names.join(', ')}`);
    return 2;
  }
  const topology = (await build()).describe();
  console.log(values.json ? JSON.stringify(topology, null, 2) : formatTopology(topology));
  return 0;
}
