import { describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { RoutedLog } from '../connectors/routed-log.js';
import { readTopic } from '../pipelines/samples.js';

async function logs() {
  const local = new EmbeddedLog();
  const rest = new EmbeddedLog();
  await local.ensureTopic('samples', { partitions: 2 });
  await rest.ensureTopic('events', { partitions: 1 });
  return { local, rest, routed: new RoutedLog(local, ['samples'], rest) };
}

describe('RoutedLog', () => {
  it('keeps the named topics in one log and every other topic in the other', async () => {
    const { local, rest, routed } = await logs();
    await routed.append('samples', [{ key: 'u1', value: 's1' }]);
    await routed.append('events', [{ key: 'u1', value: 'e1' }]);
    expect((await readTopic(local, 'samples')).map((r) => r.value)).toEqual(['s1']);
    expect((await readTopic(rest, 'events')).map((r) => r.value)).toEqual(['e1']);
    expect(await routed.partitionCount('samples')).toBe(2);
    expect(await routed.partitionCount('events')).toBe(1);
    expect((await routed.offsets('events')).map((p) => p.high)).toEqual([1]);
    // A consumer of each side reads that side's records.
    expect((await readTopic(routed, 'samples')).map((r) => r.value)).toEqual(['s1']);
    expect((await readTopic(routed, 'events')).map((r) => r.value)).toEqual(['e1']);
  });

  it('refuses a consumer group over topics of both logs', async () => {
    const { routed } = await logs();
    expect(() => routed.consumer({ group: 'both', topics: ['events', 'samples'] })).toThrow(/group both reads samples from one log and events from another/);
  });

  it('closes only the log it owns', async () => {
    const { routed } = await logs();
    await routed.append('events', [{ key: null, value: 'e1' }]);
    const ofLocal = routed.consumer({ group: 'local', topics: ['samples'], pollTimeoutMs: 10 });
    const ofRest = routed.consumer({ group: 'rest', topics: ['events'], fromBeginning: true, pollTimeoutMs: 10 });
    await routed.close();
    expect(await ofLocal.next()).toBeUndefined();
    expect((await ofRest.next())?.records.map((r) => r.value)).toEqual(['e1']);
    await ofRest.close();
  });
});
