import type { BehaviourEvent, ItemEvent } from '../../schema/events.js';
import { itemEvents } from './live.js';
import type { World } from './world.js';

/** Anything that ranks for a simulated user and hears what they did. */
export interface Policy {
  readonly name: string;
  recommend(userId: string, count: number, now: number, requestId: string): Promise<readonly string[]>;
  /** The impressions and clicks the user produced for one recommendation, in event time. */
  observe(events: readonly BehaviourEvent[]): Promise<void>;
  /** Items that joined the catalogue. Policies that do not serve from a catalogue of their own may ignore them. */
  addItems?(events: readonly ItemEvent[]): Promise<void>;
}

export interface SimulationOptions {
  readonly steps: number;
  /** Items shown per request. Default 10. */
  readonly listSize?: number;
  /** Event time of the first step (ms). Default 2026-01-01. */
  readonly startTs?: number;
  /** Event time between steps (ms). Default 1,000. */
  readonly stepMs?: number;
  /** Steps at which a share of users change taste. */
  readonly drifts?: readonly { readonly atStep: number; readonly share: number }[];
  /** New items joining the catalogue: `count` every `everySteps` steps. Default none. */
  readonly arrivals?: { readonly everySteps: number; readonly count: number };
  /** Steps per point of the over-time series. Default steps / 20. */
  readonly bucketSteps?: number;
  /** Called after each step, for progress bars. */
  readonly onStep?: (step: number) => void;
}

export interface SimulationResult {
  readonly policy: string;
  readonly steps: number;
  readonly impressions: number;
  readonly clicks: number;
  readonly ctr: number;
  /** Expected clicks the best possible lists would have earned, minus the expected clicks of the lists shown. */
  readonly regret: number;
  readonly ctrOverTime: readonly number[];
  readonly regretOverTime: readonly number[];
  /** CTR over the last quarter of the steps: what a policy has adapted to by the end. */
  readonly lastQuarterCtr: number;
}

/**
 * Closes the loop between a world and a policy: each step a random user asks for a list, clicks on it with the
 * world's true probabilities, and the policy hears the impressions and clicks.
 */
export async function simulate(world: World, policy: Policy, options: SimulationOptions): Promise<SimulationResult> {
  const listSize = options.listSize ?? 10;
  const startTs = options.startTs ?? Date.UTC(2026, 0, 1);
  const stepMs = options.stepMs ?? 1000;
  const bucketSteps = Math.max(1, options.bucketSteps ?? Math.floor(options.steps / 20));
  const drifts = new Map((options.drifts ?? []).map((d) => [d.atStep, d.share]));
  const lastQuarterFrom = Math.floor(options.steps * 0.75);

  let impressions = 0;
  let clicks = 0;
  let regret = 0;
  let lastQuarter = { impressions: 0, clicks: 0 };
  let bucket = { impressions: 0, clicks: 0, regret: 0 };
  const ctrOverTime: number[] = [];
  const regretOverTime: number[] = [];

  const arrivals = options.arrivals;
  if (arrivals && !(Number.isInteger(arrivals.everySteps) && arrivals.everySteps > 0 && Number.isInteger(arrivals.count) && arrivals.count >= 0)) {
    throw new RangeError(`arrivals need a positive whole everySteps and a whole count >= 0, got ${JSON.stringify(arrivals)}`);
  }

  for (let step = 0; step < options.steps; step++) {
    const now = startTs + step * stepMs;
    world.advance(now);
    const share = drifts.get(step);
    if (share !== undefined) world.drift(share);
    if (arrivals && arrivals.count > 0 && step > 0 && step % arrivals.everySteps === 0) await policy.addItems?.(itemEvents(world.arrive(arrivals.count), now));
    const user = world.randomUser();
    const requestId = `${policy.name}-${step}`;
    const shown = (await policy.recommend(user.userId, listSize, now, requestId)).slice(0, listSize);
    const clickedPositions = world.sampleClicks(user, shown);
    const stepRegret = world.bestExpectedClicks(user, shown.length) - world.expectedClicks(user, shown);

    const events: BehaviourEvent[] = shown.map((itemId, position) => ({
      id: `${requestId}-imp-${position}`,
      type: 'impression',
      userId: user.userId,
      itemId,
      ts: now,
      requestId,
      position,
    }));
    for (const position of clickedPositions) {
      events.push({
        id: `${requestId}-click-${position}`,
        type: 'click',
        userId: user.userId,
        itemId: shown[position]!,
        ts: now + 1 + position,
        requestId,
        position,
      });
    }
    await policy.observe(events);

    impressions += shown.length;
    clicks += clickedPositions.length;
    regret += stepRegret;
    bucket = {
      impressions: bucket.impressions + shown.length,
      clicks: bucket.clicks + clickedPositions.length,
      regret: bucket.regret + stepRegret,
    };
    if (step >= lastQuarterFrom) {
      lastQuarter = { impressions: lastQuarter.impressions + shown.length, clicks: lastQuarter.clicks + clickedPositions.length };
    }
    if ((step + 1) % bucketSteps === 0 || step === options.steps - 1) {
      ctrOverTime.push(bucket.impressions > 0 ? bucket.clicks / bucket.impressions : 0);
      regretOverTime.push(regret);
      bucket = { impressions: 0, clicks: 0, regret: 0 };
    }
    options.onStep?.(step);
  }

  return {
    policy: policy.name,
    steps: options.steps,
    impressions,
    clicks,
    ctr: impressions > 0 ? clicks / impressions : 0,
    regret,
    ctrOverTime,
    regretOverTime,
    lastQuarterCtr: lastQuarter.impressions > 0 ? lastQuarter.clicks / lastQuarter.impressions : 0,
  };
}

/** Shows random items: the floor any learning policy must beat. */
export function randomPolicy(world: World): Policy {
  return {
    name: 'random',
    async recommend(_userId, count) {
      const picked = new Set<string>();
      while (picked.size < Math.min(count, world.items.length)) {
        picked.add(world.items[Math.floor(world.random() * world.items.length)]!.itemId);
      }
      return [...picked];
    },
    async observe() {},
  };
}

/** Knows every user's true taste: the ceiling, with zero regret. */
export function oraclePolicy(world: World): Policy {
  const byId = new Map(world.users.map((u) => [u.userId, u]));
  return {
    name: 'oracle',
    async recommend(userId, count) {
      const user = byId.get(userId)!;
      return world.items
        .map((item) => ({ itemId: item.itemId, attraction: world.attraction(user, item) }))
        .sort((a, b) => b.attraction - a.attraction)
        .slice(0, count)
        .map((c) => c.itemId);
    },
    async observe() {},
  };
}
