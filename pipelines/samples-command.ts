import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLog } from '../connectors/kafka/index.js';
import { parseLabelledSample } from '../schema/samples.js';
import { loadConfig } from './config.js';
import { readTopic } from './samples.js';

const USAGE = `usage: eddy samples                      run the samples role (events + feature-log -> samples)
       eddy samples --export FILE.jsonl  write every sample on the samples topic to FILE, one JSON object a line
Settings come from the environment (EDDY_ATTRIBUTION_WINDOW_MS, KAFKA_*); see the README.`;

/**
 * `eddy samples`: the samples role, or with `--export` a JSONL dump of the samples topic for offline training. The
 * export reads the topic as it is when the command starts; records that are not valid samples are left out and
 * counted on stderr, so the file only ever holds trainable samples.
 */
export async function main(args: readonly string[]): Promise<number | void> {
  const { values } = parseArgs({
    args: [...args],
    strict: false,
    options: { export: { type: 'string' }, help: { type: 'boolean', default: false } },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.export === undefined) {
    const { roleCommand } = await import('./roles.js');
    return roleCommand('samples').main(args);
  }
  if (typeof values.export !== 'string' || values.export === '') {
    console.error(`eddy samples: --export needs a file name\n${USAGE}`);
    return 2;
  }
  const config = loadConfig();
  const log = await createLog(config.kafka);
  try {
    const { written, invalid } = await exportSamples(log, config.kafka.topics.samples.name, values.export);
    console.error(`eddy samples: wrote ${written} samples to ${values.export}${invalid > 0 ? `, left out ${invalid} invalid records` : ''}`);
    return 0;
  } finally {
    await log.close();
  }
}

/** Writes the samples topic as JSONL; resolves with how many samples were written and how many records were not samples. */
export async function exportSamples(
  log: Parameters<typeof readTopic>[0],
  topic: string,
  file: string,
): Promise<{ written: number; invalid: number }> {
  const records = await readTopic(log, topic);
  const out = createWriteStream(file, { encoding: 'utf8' });
  let written = 0;
  let invalid = 0;
  try {
    for (const record of records) {
      const parsed = parseLabelledSample(record.value);
      if (!parsed.ok) {
        invalid++;
        continue;
      }
      if (!out.write(`${JSON.stringify(parsed.value)}\n`)) await once(out, 'drain');
      written++;
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
  return { written, invalid };
}
