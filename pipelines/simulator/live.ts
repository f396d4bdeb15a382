import type { EddyService } from '../../connectors/http.js';
import type { BehaviourEvent, ItemEvent } from '../../schema/events.js';
import { World, type SimItem, type WorldOptions } from './world.js';

export interface LiveSimulatorOptions {
  readonly service: EddyService;
  /** Recommendation requests per second. */
  readonly rps: number;
  readonly world?: WorldOptions;
  /** Share of users whose taste changes every `driftEveryMs`. Default 0.1 every 5 minutes. */
  readonly driftShare?: number;
  readonly driftEveryMs?: number;
  readonly onError?: (error: unknown) => void;
}

/** The demo catalogue as item events: a title and a genre per item, published now. */
export function catalogueEvents(world: World, now: number): ItemEvent[] {
  return itemEvents(world.items, now);
}

/** Item events for simulated items, published at `now`. */
export function itemEvents(items: readonly SimItem[], now: number): ItemEvent[] {
  return items.map((item) => ({
    type: 'item',
    itemId: item.itemId,
    ts: now,
    fields: Object.assign(Object.create(null) as Record<string, string | string[]>, { title: `Demo ${item.itemId}`, genres: [item.genre] }),
  }));
}

/**
 * Traffic for the embedded demo: simulated users with latent tastes ask the service for lists, as a client would, and
 * click with their true probabilities; the clicks go back through `ingest`, so the system visibly learns.
 */
export class LiveSimulator {
  readonly world: World;
  requests = 0;
  clicks = 0;
  impressions = 0;
  private timer: NodeJS.Timeout | undefined;
  private drifter: NodeJS.Timeout | undefined;
  private inFlight = false;

  constructor(private readonly options: LiveSimulatorOptions) {
    this.world = new World(options.world);
  }

  async start(): Promise<void> {
    await this.options.service.ingest(catalogueEvents(this.world, Date.now()));
    this.timer = setInterval(() => void this.step(), Math.max(1, Math.round(1000 / this.options.rps)));
    this.drifter = setInterval(() => this.world.drift(this.options.driftShare ?? 0.1), this.options.driftEveryMs ?? 300_000);
  }

  get ctr(): number {
    return this.impressions > 0 ? this.clicks / this.impressions : 0;
  }

  private async step(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      const user = this.world.randomUser();
      const requestId = `sim-${++this.requests}`;
      const response = await this.options.service.recommend({ requestId, userId: user.userId, count: 10 });
      const shown = response.items.map((i) => i.itemId);
      this.impressions += shown.length;
      const now = Date.now();
      const clicks: BehaviourEvent[] = this.world.sampleClicks(user, shown).map((position) => ({
        id: `${requestId}-click-${position}`,
        type: 'click',
        userId: user.userId,
        itemId: shown[position]!,
        ts: now,
        requestId,
        position,
      }));
      this.clicks += clicks.length;
      if (clicks.length > 0) await this.options.service.ingest(clicks);
    } catch (error) {
      this.options.onError?.(error);
    } finally {
      this.inFlight = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    clearInterval(this.drifter);
  }
}
