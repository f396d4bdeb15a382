import { mulberry32, sampleNormal, type Random } from '../../models/random.js';

/**
 * A synthetic world with a known truth: items with genres and latent vectors, users with latent preferences that can
 * drift to another genre, and a click model with position bias. A user clicks an item shown at position p with
 * probability examine(p) * attract(user, item), so what a policy earns can be compared with the best it could earn.
 *
 * Three kinds of change over time, each off by default:
 * - taste drift (`drift`): a share of users move to another genre;
 * - item quality drift (`qualityDrift` = d): at each drift every item's intrinsic appeal moves, as items go in and
 *   out of fashion: q <- sqrt(1 - d^2) q + d * fresh draw, which keeps its spread; nothing but clicks reveals it;
 * - new items (`arrive`) with novelty: an item is most appealing when it is new, by `noveltyBoost` in log-odds,
 *   fading with `noveltyHalfLifeMs` of event time (`advance` sets the clock), as with films, news or music.
 *   The initial catalogue arrived at time 0, long before any simulated step: it is established, not new.
 * The world's own changes (drift, arrivals, quality) draw from a generator of their own, so copies of a world run
 * against different policies change in the same way; clicks draw from another.
 */
export interface WorldOptions {
  /** Default 500. */
  readonly items?: number;
  /** Default 2,000. */
  readonly users?: number;
  /** Default 10. */
  readonly genres?: number;
  /** Latent dimensions. Default 8. */
  readonly dimensions?: number;
  /** Examination probability at position p is (1 + p) ^ -positionBias. Default 0.7. */
  readonly positionBias?: number;
  /** Base log-odds of attraction, which sets the overall click rate. Default -3. */
  readonly baseLogit?: number;
  /** How strongly the user-item match moves attraction. Default 4. */
  readonly affinityWeight?: number;
  /** Default 42. */
  readonly seed?: number;
  /** Extra log-odds of attraction of a brand-new item. Default 0: no novelty. */
  readonly noveltyBoost?: number;
  /** Event time over which the novelty boost halves. Default 1 hour. */
  readonly noveltyHalfLifeMs?: number;
  /** How far each `drift` moves items' intrinsic appeal, from 0 (never) to 1 (redrawn afresh). Default 0. */
  readonly qualityDrift?: number;
}

export interface SimItem {
  readonly itemId: string;
  readonly genre: string;
  readonly vector: Float64Array;
  /** Intrinsic appeal, the same for everyone; moves with `qualityDrift`. */
  quality: number;
  /** Event time the item joined the catalogue (the world's clock then). */
  readonly arrivedAt: number;
}

export interface SimUser {
  readonly userId: string;
  /** Index into the genres: the taste the latent vector leans toward now. */
  genre: number;
  vector: Float64Array;
}

function normalise(v: Float64Array): Float64Array {
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < v.length; i++) v[i]! /= norm;
  return v;
}

const QUALITY_SCALE = 0.5;

export class World {
  readonly users: readonly SimUser[];
  readonly genreNames: readonly string[];
  /** Draws clicks and users. */
  readonly random: Random;
  /** Draws the world's own changes: drift, new items, quality. */
  private readonly evolution: Random;
  private readonly genreCentres: readonly Float64Array[];
  private readonly catalogue: SimItem[] = [];
  private readonly itemsById = new Map<string, SimItem>();
  private readonly options: Required<WorldOptions>;
  /** Event time, for novelty. */
  private clock = 0;

  constructor(options: WorldOptions = {}) {
    this.options = {
      items: options.items ?? 500,
      users: options.users ?? 2000,
      genres: options.genres ?? 10,
      dimensions: options.dimensions ?? 8,
      positionBias: options.positionBias ?? 0.7,
      baseLogit: options.baseLogit ?? -3,
      affinityWeight: options.affinityWeight ?? 4,
      seed: options.seed ?? 42,
      noveltyBoost: options.noveltyBoost ?? 0,
      noveltyHalfLifeMs: options.noveltyHalfLifeMs ?? 3_600_000,
      qualityDrift: options.qualityDrift ?? 0,
    };
    if (!(this.options.qualityDrift >= 0 && this.options.qualityDrift <= 1)) throw new RangeError(`qualityDrift must be in [0, 1], got ${this.options.qualityDrift}`);
    if (!(this.options.noveltyHalfLifeMs > 0)) throw new RangeError(`noveltyHalfLifeMs must be positive, got ${this.options.noveltyHalfLifeMs}`);
    const { items, users, genres, dimensions, seed } = this.options;
    this.random = mulberry32(seed);
    this.evolution = mulberry32(seed ^ 0x5bd1e995);
    const gaussianVector = (scale: number) => Float64Array.from({ length: dimensions }, () => sampleNormal(this.random) * scale);
    this.genreNames = Array.from({ length: genres }, (_, g) => `genre-${g}`);
    this.genreCentres = this.genreNames.map(() => normalise(gaussianVector(1)));
    for (let i = 0; i < items; i++) this.addItem(this.random);
    this.users = Array.from({ length: users }, (_, u) => {
      const genre = Math.floor(this.random() * genres);
      return { userId: `user-${u}`, genre, vector: this.tasteFor(genre, this.random) };
    });
  }

  /** The catalogue so far, in order of arrival. */
  get items(): readonly SimItem[] {
    return this.catalogue;
  }

  item(itemId: string): SimItem | undefined {
    return this.itemsById.get(itemId);
  }

  /** Sets the world's event time (ms), which novelty fades with. */
  advance(now: number): void {
    this.clock = now;
  }

  /** Adds `count` new items arriving now, genres in turn, and returns them. */
  arrive(count: number): SimItem[] {
    return Array.from({ length: count }, () => this.addItem(this.evolution));
  }

  /** Probability that the user clicks the item if they look at it. */
  attraction(user: SimUser, item: SimItem): number {
    let dot = 0;
    for (let d = 0; d < user.vector.length; d++) dot += user.vector[d]! * item.vector[d]!;
    let logit = this.options.baseLogit + this.options.affinityWeight * dot + item.quality;
    if (this.options.noveltyBoost !== 0) logit += this.options.noveltyBoost * 2 ** (-Math.max(0, this.clock - item.arrivedAt) / this.options.noveltyHalfLifeMs);
    return 1 / (1 + Math.exp(-logit));
  }

  /** Probability that a user looks at position `position` (0-based). */
  examination(position: number): number {
    return Math.pow(1 + position, -this.options.positionBias);
  }

  clickProbability(user: SimUser, item: SimItem, position: number): number {
    return this.examination(position) * this.attraction(user, item);
  }

  /** The most clicks a list of `count` could earn this user in expectation: the best items, best first. */
  bestExpectedClicks(user: SimUser, count: number, exclude?: ReadonlySet<string>): number {
    const attractions = this.items
      .filter((item) => !exclude?.has(item.itemId))
      .map((item) => this.attraction(user, item))
      .sort((a, b) => b - a);
    let total = 0;
    for (let p = 0; p < Math.min(count, attractions.length); p++) total += this.examination(p) * attractions[p]!;
    return total;
  }

  expectedClicks(user: SimUser, itemIds: readonly string[]): number {
    let total = 0;
    itemIds.forEach((itemId, position) => {
      const item = this.itemsById.get(itemId);
      if (item) total += this.clickProbability(user, item, position);
    });
    return total;
  }

  /** Draws which of the shown items the user clicks. */
  sampleClicks(user: SimUser, itemIds: readonly string[]): number[] {
    const clicked: number[] = [];
    itemIds.forEach((itemId, position) => {
      const item = this.itemsById.get(itemId);
      if (item && this.random() < this.clickProbability(user, item, position)) clicked.push(position);
    });
    return clicked;
  }

  /** Moves a share of users' tastes to another genre, as tastes change over time; items' appeal moves by `qualityDrift`. */
  drift(share: number): void {
    const random = this.evolution;
    for (const user of this.users) {
      if (random() >= share) continue;
      const genre = (user.genre + 1 + Math.floor(random() * (this.genreNames.length - 1))) % this.genreNames.length;
      user.genre = genre;
      user.vector = this.tasteFor(genre, random);
    }
    const step = this.options.qualityDrift;
    if (step > 0) {
      const keep = Math.sqrt(1 - step * step);
      for (const item of this.catalogue) item.quality = keep * item.quality + step * sampleNormal(random) * QUALITY_SCALE;
    }
  }

  randomUser(): SimUser {
    return this.users[Math.floor(this.random() * this.users.length)]!;
  }

  private addItem(random: Random): SimItem {
    const index = this.catalogue.length;
    const genre = index % this.options.genres;
    // One noise vector drawn per dimension, of which one coordinate is used: wasteful, but it is how the seeded
    // worlds were first drawn, and keeping it keeps their figures comparable.
    const dimensions = this.options.dimensions;
    const vector = normalise(this.genreCentres[genre]!.map((x, d) => x + Float64Array.from({ length: dimensions }, () => sampleNormal(random) * 0.35)[d]!));
    const item: SimItem = { itemId: `item-${index}`, genre: this.genreNames[genre]!, vector, quality: sampleNormal(random) * QUALITY_SCALE, arrivedAt: this.clock };
    this.catalogue.push(item);
    this.itemsById.set(item.itemId, item);
    return item;
  }

  private tasteFor(genre: number, random: Random): Float64Array {
    const noise = Float64Array.from({ length: this.options.dimensions }, () => sampleNormal(random) * 0.3);
    return normalise(this.genreCentres[genre]!.map((x, d) => x + noise[d]!));
  }
}
