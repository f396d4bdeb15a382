import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseSimulateArgs, runSimulateCommand, SimulateArgsError } from '../pipelines/simulate-command.js';
import { simulate } from '../pipelines/simulator/loop.js';
import { eddyPolicy } from '../pipelines/simulator/policies.js';
import { World } from '../pipelines/simulator/world.js';

const worldOptions = { seed: 3, items: 120, users: 60, genres: 4 };

describe('Eddy policies in the closed loop', () => {
  it('online learning beats random ranking, and the frozen model stops learning after its warm-up', { timeout: 60_000 }, async () => {
    const steps = 800;
    const runs = [];
    for (const kind of ['online', 'frozen', 'random'] as const) {
      const world = new World(worldOptions);
      const policy = eddyPolicy(world, { kind, warmupSteps: 100 });
      runs.push({ kind, policy, result: await simulate(world, policy, { steps, drifts: [{ atStep: 400, share: 0.5 }] }) });
    }
    const [online, frozen, random] = runs;
    expect(online!.policy.samples).toBe(online!.result.impressions);
    expect(frozen!.policy.samples).toBe(100 * 10);
    expect(random!.policy.samples).toBe(0);
    expect(online!.result.ctr).toBeGreaterThan(1.3 * random!.result.ctr);
    expect(online!.result.regret).toBeLessThan(random!.result.regret);
  });

  it('serves through the pipeline: every list has distinct catalogue items', async () => {
    const world = new World(worldOptions);
    const policy = eddyPolicy(world, { kind: 'online' });
    const list = await policy.recommend('user-1', 10, Date.UTC(2026, 0, 1), 'r1');
    expect(new Set(list).size).toBe(10);
    for (const itemId of list) expect(world.item(itemId)).toBeDefined();
  });
});

describe('eddy simulate', () => {
  it('prints each policy and the online / frozen ratio as JSON', { timeout: 60_000 }, async () => {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await runSimulateCommand(['--steps', '400', '--items', '80', '--users', '40', '--genres', '4', '--warmup', '50', '--json', '--no-progress'], { stdout, stderr: new PassThrough() });
    expect(code).toBe(0);
    const report = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(Object.keys(report.policies)).toEqual(['online', 'frozen', 'random']);
    expect(report.drifts.map((d: { atStep: number }) => d.atStep)).toEqual([100, 200, 300]);
    expect(report.onlineOverFrozen).toBeCloseTo(report.policies.online.lastQuarterCtr / report.policies.frozen.lastQuarterCtr, 10);
    expect(report.policies.online.ctrOverTime).toHaveLength(20);
  });

  it('rejects bad arguments', () => {
    expect(() => parseSimulateArgs(['--steps', '0'])).toThrow(SimulateArgsError);
    expect(() => parseSimulateArgs(['--policies', 'online,greedy'])).toThrow(/greedy/);
    expect(() => parseSimulateArgs(['--drift-share', '2'])).toThrow(/drift-share/);
    expect(parseSimulateArgs(['--steps', '800'])).toMatchObject({ steps: 800, driftEvery: 200, warmup: 80 });
    expect(() => parseSimulateArgs(['--quality-drift', '2'])).toThrow(/quality-drift/);
    // The default world grows and its items' appeal moves; both can be turned off.
    expect(parseSimulateArgs(['--steps', '800'])).toMatchObject({ arrivals: { everySteps: 40, count: 50 }, world: { noveltyBoost: 2, noveltyHalfLifeMs: 80_000, qualityDrift: 0.5 } });
    expect(parseSimulateArgs(['--arrivals', '0', '--novelty', '0', '--quality-drift', '0'])).toMatchObject({ arrivals: { count: 0 }, world: { noveltyBoost: 0, qualityDrift: 0 } });
  });
});
