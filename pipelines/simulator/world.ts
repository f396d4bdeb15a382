import { mulberry32, sampleNormal, type Random } from '../../models/random.js';

/**
 * A synthetic world with a known truth: items with genres and latent vectors, users with latent preferences that can
 * drift to another genre, and a click model with position bias. A user clicks an item shown at position p with
 * probability examine(p) * attract(user, item), so what a policy earns can be compared with the best it could earn.
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
}

export interface SimItem {
  readonly itemId: string;
  readonly genre: string;
  readonly vector: Float64Array;
  /** Intrinsic appeal, the same for everyone. */
  readonly quality: number;
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

export class World {
  readonly items: readonly SimItem[];
  readonly users: readonly SimUser[];
  readonly genreNames: readonly string[];
  readonly random: Random;
  private readonly genreCentres: readonly Float64Array[];
  private readonly itemsById: ReadonlyMap<string, SimItem>;
  private readonly options: Required<WorldOptions>;

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
    };
    const { items, users, genres, dimensions, seed } = this.options;
    this.random = mulberry32(seed);
    const gaussianVector = (scale: number) => Float64Array.from({ length: dimensions }, () => sampleNormal(this.random) * scale);
    this.genreNames = Array.from({ length: genres }, (_, g) => `genre-${g}`);
    this.genreCentres = this.genreNames.map(() => normalise(gaussianVector(1)));
    this.items = Array.from({ length: items }, (_, i) => {
      const genre = i % genres;
      const vector = normalise(this.genreCentres[genre]!.map((x, d) => x + gaussianVector(0.35)[d]!));
      return { itemId: `item-${i}`, genre: this.genreNames[genre]!, vector, quality: sampleNormal(this.random) * 0.5 };
    });
    this.users = Array.from({ length: users }, (_, u) => {
      const genre = Math.floor(this.random() * genres);
      return { userId: `user-${u}`, genre, vector: this.tasteFor(genre) };
    });
    this.itemsById = new Map(this.items.map((item) => [item.itemId, item]));
  }

  item(itemId: string): SimItem | undefined {
    return this.itemsById.get(itemId);
  }

  /** Probability that the user clicks the item if they look at it. */
  attraction(user: SimUser, item: SimItem): number {
    let dot = 0;
    for (let d = 0; d < user.vector.length; d++) dot += user.vector[d]! * item.vector[d]!;
    const logit = this.options.baseLogit + this.options.affinityWeight * dot + item.quality;
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

  /** Moves a share of users' tastes to another genre, as tastes change over time. */
  drift(share: number): void {
    for (const user of this.users) {
      if (this.random() >= share) continue;
      const genre = (user.genre + 1 + Math.floor(this.random() * (this.genreNames.length - 1))) % this.genreNames.length;
      user.genre = genre;
      user.vector = this.tasteFor(genre);
    }
  }

  randomUser(): SimUser {
    return this.users[Math.floor(this.random() * this.users.length)]!;
  }

  private tasteFor(genre: number): Float64Array {
    const noise = Float64Array.from({ length: this.options.dimensions }, () => sampleNormal(this.random) * 0.3);
    return normalise(this.genreCentres[genre]!.map((x, d) => x + noise[d]!));
  }
}
