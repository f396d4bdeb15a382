import { hashString } from './hashing.js';
import { numberParam, tensorOf, type ExportMeta, type ModelVersion } from './learner.js';
import { mulberry32, type Random } from './random.js';

/**
 * Item embeddings by item2vec: skip-gram with negative sampling over users' interaction sequences, where items
 * that appear near each other in a sequence get close vectors. Trained offline with `ItemEmbeddings.train` and
 * refreshed online with `trainPair` on each new co-occurrence. Deterministic for a seed: initial vectors come from
 * the item id's hash, so they do not depend on the order in which items were first seen, and negatives are drawn
 * from a seeded generator.
 *
 * Search uses the input ("item") vectors; the output ("context") vectors are kept for further training.
 */

export interface ItemEmbeddingOptions {
  /** Vector width. Default 32. */
  readonly dim?: number;
  /** Negative samples per positive pair. Default 5. */
  readonly negatives?: number;
  /** Seeds initial vectors and negative sampling. Default 1. */
  readonly seed?: number;
  /** Learning rate of online `trainPair` calls. Default 0.025. */
  readonly learningRate?: number;
}

export interface Item2VecTrainingOptions extends ItemEmbeddingOptions {
  /** Items on each side of a position that count as its context. Default 5. */
  readonly window?: number;
  /** Passes over the sequences. Default 5. */
  readonly epochs?: number;
  /** Learning rate decays linearly from `learningRate` down to this over training. Default 0.0001. */
  readonly minLearningRate?: number;
}

/** Negative sampling draws item i with probability proportional to count_i^0.75, as word2vec does. */
const UNIGRAM_POWER = 0.75;
const TABLE_SIZE = 1 << 16;
const MAX_EXP = 6;

function sigmoid(x: number): number {
  if (x > MAX_EXP) return 1;
  if (x < -MAX_EXP) return 0;
  return 1 / (1 + Math.exp(-x));
}

export class ItemEmbeddings {
  readonly dim: number;
  readonly negatives: number;
  readonly seed: number;
  /** Learning rate of online `trainPair` calls. */
  learningRate: number;
  private readonly ids: string[] = [];
  private readonly index = new Map<string, number>();
  private input: Float32Array;
  private output: Float32Array;
  private counts: Float64Array;
  private readonly random: Random;
  private table = new Int32Array(0);
  /** Total count when the negative table was built; it is rebuilt once the total grows by a quarter. */
  private tableTotal = 0;
  private total = 0;
  private version = 0;
  private readonly versions: number[] = [];
  private readonly gradient: Float32Array;

  constructor(options: ItemEmbeddingOptions = {}) {
    this.dim = options.dim ?? 32;
    this.negatives = options.negatives ?? 5;
    this.seed = options.seed ?? 1;
    this.learningRate = options.learningRate ?? 0.025;
    if (!Number.isInteger(this.dim) || this.dim < 1) throw new RangeError(`dim must be a positive integer, got ${this.dim}`);
    this.random = mulberry32(this.seed);
    this.input = new Float32Array(64 * this.dim);
    this.output = new Float32Array(64 * this.dim);
    this.counts = new Float64Array(64);
    this.gradient = new Float32Array(this.dim);
  }

  /** Trains on interaction sequences (each a user's items in time order) and returns the embeddings. */
  static train(sequences: readonly (readonly string[])[], options: Item2VecTrainingOptions = {}): ItemEmbeddings {
    const embeddings = new ItemEmbeddings(options);
    const window = options.window ?? 5;
    const epochs = options.epochs ?? 5;
    const start = options.learningRate ?? 0.025;
    const end = options.minLearningRate ?? 0.0001;
    const encoded = sequences.map((sequence) => sequence.map((itemId) => embeddings.ensure(itemId)));
    for (const sequence of encoded) for (const item of sequence) embeddings.counts[item]! += 1;
    embeddings.total = encoded.reduce((sum, sequence) => sum + sequence.length, 0);
    embeddings.buildTable();
    let pairs = 0;
    for (const sequence of encoded) pairs += contextPairs(sequence.length, window);
    const steps = Math.max(1, pairs * epochs);
    let step = 0;
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (const sequence of encoded) {
        for (let i = 0; i < sequence.length; i++) {
          const from = Math.max(0, i - window);
          const to = Math.min(sequence.length - 1, i + window);
          for (let j = from; j <= to; j++) {
            if (j === i || sequence[j] === sequence[i]) continue;
            const rate = start - ((start - end) * step++) / steps;
            embeddings.step(sequence[i]!, sequence[j]!, rate);
          }
        }
      }
    }
    return embeddings;
  }

  /** Model kind carried by exported versions. */
  static readonly kind = 'item2vec';

  /** A model version for the `models` topic: item ids, both vector tables and the counts behind negative sampling. */
  export(meta: ExportMeta): ModelVersion {
    const n = this.ids.length;
    return {
      model: meta.model,
      version: meta.version,
      kind: ItemEmbeddings.kind,
      parent: meta.parent,
      createdAt: meta.createdAt ?? Date.now(),
      samplesSeen: this.total,
      params: { dim: this.dim, negatives: this.negatives, seed: this.seed, learningRate: this.learningRate, ids: JSON.stringify(this.ids) },
      tensors: {
        input: this.input.slice(0, n * this.dim),
        output: this.output.slice(0, n * this.dim),
        counts: this.counts.slice(0, n),
      },
    };
  }

  /** Embeddings from an exported version, ready to serve and to keep training. */
  static fromModelVersion(version: ModelVersion): ItemEmbeddings {
    if (version.kind !== ItemEmbeddings.kind) throw new Error(`model ${version.model}@${version.version} is a ${version.kind}, not ${ItemEmbeddings.kind}`);
    let ids: unknown;
    try {
      ids = JSON.parse(String(version.params.ids));
    } catch (error) {
      throw new Error(`model ${version.model}@${version.version}: param "ids" is not JSON`, { cause: error });
    }
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw new Error(`model ${version.model}@${version.version}: param "ids" must be a list of strings`);
    const embeddings = new ItemEmbeddings({
      dim: numberParam(version, 'dim'),
      negatives: numberParam(version, 'negatives'),
      seed: numberParam(version, 'seed'),
      learningRate: numberParam(version, 'learningRate'),
    });
    const dim = embeddings.dim;
    const input = tensorOf(version, 'input', Float32Array, ids.length * dim);
    const output = tensorOf(version, 'output', Float32Array, ids.length * dim);
    const counts = tensorOf(version, 'counts', Float64Array, ids.length);
    for (const id of ids as string[]) embeddings.ensure(id);
    embeddings.input.set(input);
    embeddings.output.set(output);
    embeddings.counts.set(counts);
    embeddings.total = version.samplesSeen;
    embeddings.buildTable();
    return embeddings;
  }

  get size(): number {
    return this.ids.length;
  }

  has(itemId: string): boolean {
    return this.index.has(itemId);
  }

  indexOf(itemId: string): number | undefined {
    return this.index.get(itemId);
  }

  idAt(index: number): string {
    const id = this.ids[index];
    if (id === undefined) throw new RangeError(`no item at index ${index}`);
    return id;
  }

  /**
   * The item's vector, or undefined for unknown items. A live view: later training changes it, and adding items may
   * move the storage, so read it again rather than keep it.
   */
  vector(itemId: string): Float32Array | undefined {
    const index = this.index.get(itemId);
    return index === undefined ? undefined : this.vectorAt(index);
  }

  vectorAt(index: number): Float32Array {
    return this.input.subarray(index * this.dim, (index + 1) * this.dim);
  }

  /**
   * Copies the item's vector into `out` at `offset` and returns true, or returns false for unknown items: `vector`
   * without the view it allocates, for loops over many items.
   */
  copyVector(itemId: string, out: Float32Array, offset: number): boolean {
    const index = this.index.get(itemId);
    if (index === undefined) return false;
    const input = this.input;
    for (let d = 0, from = index * this.dim; d < this.dim; d++) out[offset + d] = input[from + d]!;
    return true;
  }

  /** Increases each time a vector changes; `versionAt(i)` tells which vectors changed since a given version. */
  get currentVersion(): number {
    return this.version;
  }

  versionAt(index: number): number {
    return this.versions[index] ?? 0;
  }

  /** The item's index, adding it with its seeded initial vector when new. */
  ensure(itemId: string): number {
    const known = this.index.get(itemId);
    if (known !== undefined) return known;
    const index = this.ids.length;
    if ((index + 1) * this.dim > this.input.length) this.grow();
    this.ids.push(itemId);
    this.index.set(itemId, index);
    const init = mulberry32(hashString(itemId, this.seed));
    const base = index * this.dim;
    for (let d = 0; d < this.dim; d++) this.input[base + d] = (init() - 0.5) / this.dim;
    this.versions.push(++this.version);
    return index;
  }

  /**
   * One online skip-gram step for a co-occurrence of two items, in both directions so both vectors move. Unknown
   * items are added first.
   */
  trainPair(a: string, b: string, learningRate = this.learningRate): void {
    if (a === b) return;
    const i = this.ensure(a);
    const j = this.ensure(b);
    this.counts[i]! += 1;
    this.counts[j]! += 1;
    this.total += 2;
    if (this.total > this.tableTotal * 1.25 || this.table.length === 0) this.buildTable();
    this.step(i, j, learningRate);
    this.step(j, i, learningRate);
  }

  /** Cosine similarity of two items' vectors; 0 when either is unknown. */
  similarity(a: string, b: string): number {
    const x = this.vector(a);
    const y = this.vector(b);
    if (!x || !y) return 0;
    let dot = 0;
    let nx = 0;
    let ny = 0;
    for (let d = 0; d < this.dim; d++) {
      dot += x[d]! * y[d]!;
      nx += x[d]! * x[d]!;
      ny += y[d]! * y[d]!;
    }
    return nx > 0 && ny > 0 ? dot / Math.sqrt(nx * ny) : 0;
  }

  private step(center: number, context: number, rate: number): void {
    const dim = this.dim;
    const input = this.input;
    const output = this.output;
    const c = center * dim;
    const gradient = this.gradient;
    gradient.fill(0);
    for (let n = 0; n <= this.negatives; n++) {
      let target: number;
      let label: number;
      if (n === 0) {
        target = context;
        label = 1;
      } else {
        target = this.table[Math.floor(this.random() * this.table.length)] ?? context;
        if (target === context) continue;
        label = 0;
      }
      const t = target * dim;
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += input[c + d]! * output[t + d]!;
      const g = (label - sigmoid(dot)) * rate;
      for (let d = 0; d < dim; d++) {
        gradient[d]! += g * output[t + d]!;
        output[t + d]! += g * input[c + d]!;
      }
    }
    for (let d = 0; d < dim; d++) input[c + d]! += gradient[d]!;
    this.versions[center] = ++this.version;
  }

  private buildTable(): void {
    const n = this.ids.length;
    if (n === 0) return;
    let norm = 0;
    for (let i = 0; i < n; i++) norm += Math.pow(this.counts[i]! + 1, UNIGRAM_POWER);
    const table = new Int32Array(TABLE_SIZE);
    let item = 0;
    let cumulative = Math.pow(this.counts[0]! + 1, UNIGRAM_POWER) / norm;
    for (let k = 0; k < TABLE_SIZE; k++) {
      table[k] = item;
      if ((k + 1) / TABLE_SIZE > cumulative && item < n - 1) {
        item++;
        cumulative += Math.pow(this.counts[item]! + 1, UNIGRAM_POWER) / norm;
      }
    }
    this.table = table;
    this.tableTotal = this.total;
  }

  private grow(): void {
    const capacity = this.counts.length * 2;
    const input = new Float32Array(capacity * this.dim);
    input.set(this.input);
    const output = new Float32Array(capacity * this.dim);
    output.set(this.output);
    const counts = new Float64Array(capacity);
    counts.set(this.counts);
    this.input = input;
    this.output = output;
    this.counts = counts;
  }
}

function contextPairs(length: number, window: number): number {
  let pairs = 0;
  for (let i = 0; i < length; i++) pairs += Math.min(length - 1, i + window) - Math.max(0, i - window);
  return pairs;
}
