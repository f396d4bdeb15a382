import { expect, it } from 'vitest';
import { crashLoop } from './kafka/crash-loop.js';

it('confluent: counts are exact after 20 SIGKILLs mid-stream, offsets kept with the state in Redis', async () => {
  const result = await crashLoop('confluent', { kills: 20, events: 9000, users: 37, partitions: 4 });
  expect(result.kills).toBe(20);
  expect(result.totalAtLastKill).toBeGreaterThan(0);
}, 1_200_000);
