/**
 * Scorer: an onnxruntime session plus the input contract of the model it runs.
 *
 * One `session.run` per request scores all of its candidates. Inputs are written into pooled, preallocated typed
 * arrays. A new model version is loaded, checked against the row layout and warmed up off the request path, then
 * swapped in by replacing one reference: requests already running finish on the old session, which is released when
 * the last of them is done. A model whose contract does not match the rows is refused and the old one keeps serving.
 */
import * as ort from 'onnxruntime-node';
import { checkContract, checkGraph, ContractError, readContract, type FeatureLayout, type ModelContract } from './onnx/contract.js';
import { sigmoid } from './learner.js';
import type { FeatureRow } from './rankers/ranker.js';
import { createScoringSession, type ScoringSession, type ScoringThread } from './session-thread.js';

export interface ScorerSessionOptions {
  /** Threads one run may use. Default 1: serving parallelism comes from concurrent requests, not from one run. */
  readonly intraOpNumThreads?: number;
  /** Threads for running independent graph nodes in parallel. Default 1. */
  readonly interOpNumThreads?: number;
  /** Whether idle intra-op threads spin waiting for work: lower latency, but burns CPU between runs. Default false. */
  readonly allowSpinning?: boolean;
  /** onnxruntime graph optimization level. Default 'all'. */
  readonly graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
}

export interface ScorerOptions {
  /** The feature names and order the rows carry; every model must declare the same in its contract. */
  readonly layout: FeatureLayout;
  readonly session?: ScorerSessionOptions;
  /** Candidates per request the pooled input buffers hold. Larger requests get buffers of their own. Default 1024. */
  readonly maxCandidates?: number;
  /** Online wide logit added to the deep logit for each row before the sigmoid (used by `score`). */
  readonly wideLogit?: (rows: readonly FeatureRow[]) => ArrayLike<number>;
  /** Label of the first model version. Default "1". */
  readonly version?: string;
  /**
   * `worker` runs each loaded version on a thread of its own, so scoring and loading overlap with the caller's other
   * work (what a server wants); `main` runs it on the caller's thread, a little faster for one request alone. Default
   * `main`.
   */
  readonly thread?: ScoringThread;
}

export interface ModelInfo {
  readonly version: string;
  readonly contract: ModelContract;
}

/** Writes row i's dense values at dense[i * nDense] and its categorical indices at categorical[i * nFields]. */
export type RowFill = (dense: Float32Array, categorical: Int32Array) => void;

export interface ScoreWithOptions {
  /** Added to each deep logit before the sigmoid, one per candidate. */
  readonly wideLogits?: ArrayLike<number>;
  /**
   * The fill writes only indices within their field's vocabulary, by construction (hashed modulo the vocabulary, say),
   * so the Scorer skips its own check: a pass over every index, about 1.5% of a run. Default false: an index out of
   * range scores as unknown (0).
   */
  readonly indicesInRange?: boolean;
}

export interface ScoreResult {
  /** Click probability per candidate, in input order. */
  readonly scores: Float32Array;
  /** The model's logit per candidate, before any wide logit is added. */
  readonly logits: Float32Array;
  /** [count x width] row-major final-layer inputs, when the contract declares a penultimate output. */
  readonly penultimate?: Float32Array;
  /** The model version that produced them. */
  readonly version: string;
}

interface InputBuffers {
  readonly capacity: number;
  readonly dense: Float32Array;
  readonly categorical: Int32Array;
  /** Only for models whose contract takes int64 indices. */
  readonly categorical64: BigInt64Array | undefined;
}

/** One loaded model version and the requests running on it. */
class ModelSlot {
  private inFlight = 0;
  private retired = false;
  private readonly pool: InputBuffers[] = [];
  readonly nDense: number;
  readonly nFields: number;
  readonly vocabularySizes: Int32Array;
  /** The vocabulary size every field shares, or -1 when they differ. */
  readonly sharedVocabularySize: number;

  constructor(
    readonly session: ScoringSession,
    readonly info: ModelInfo,
    private readonly capacity: number,
  ) {
    this.nDense = info.contract.dense.features.length;
    this.nFields = info.contract.categorical.fields.length;
    this.vocabularySizes = Int32Array.from(info.contract.categorical.fields, (f) => f.vocabularySize);
    this.sharedVocabularySize = this.vocabularySizes.every((size) => size === this.vocabularySizes[0]) ? (this.vocabularySizes[0] ?? -1) : -1;
  }

  enter(): void {
    this.inFlight++;
  }

  leave(): void {
    this.inFlight--;
    if (this.retired && this.inFlight === 0) this.releaseSession();
  }

  retire(): void {
    this.retired = true;
    if (this.inFlight === 0) this.releaseSession();
  }

  private releaseSession(): void {
    // A failed release can only leak this version's memory; serving goes on with the next version either way.
    this.session.release().catch(() => undefined);
  }

  acquire(count: number): InputBuffers {
    if (count <= this.capacity) {
      const pooled = this.pool.pop();
      if (pooled) return pooled;
    }
    const capacity = Math.max(count, this.capacity);
    return {
      capacity,
      dense: new Float32Array(capacity * this.nDense),
      categorical: new Int32Array(capacity * this.nFields),
      categorical64:
        this.info.contract.categorical.dtype === 'int64' ? new BigInt64Array(capacity * this.nFields) : undefined,
    };
  }

  release(buffers: InputBuffers): void {
    if (buffers.capacity === this.capacity) this.pool.push(buffers);
  }
}

/** The onnxruntime session options a Scorer uses, exported so benchmarks can build an identical bare session. */
export function sessionOptionsOf(options: ScorerSessionOptions = {}): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: options.intraOpNumThreads ?? 1,
    interOpNumThreads: options.interOpNumThreads ?? 1,
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: options.allowSpinning ? '1' : '0' } } },
  };
}

export class Scorer {
  private current: ModelSlot;
  /** Swaps run one after another so versions go live in the order they were submitted. */
  private swapChain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    first: ModelSlot,
    private readonly options: ScorerOptions,
  ) {
    this.current = first;
  }

  /** Loads the first model; rejects with a `ContractError` if it does not match `options.layout`. */
  static async create(modelBytes: Uint8Array, options: ScorerOptions): Promise<Scorer> {
    const slot = await Scorer.load(modelBytes, options.version ?? '1', options);
    return new Scorer(slot, options);
  }

  private static async load(modelBytes: Uint8Array, version: string, options: ScorerOptions): Promise<ModelSlot> {
    const contract = readContract(modelBytes);
    checkContract(contract, options.layout);
    let session: ScoringSession;
    try {
      session = await createScoringSession(modelBytes, sessionOptionsOf(options.session), options.thread ?? 'main');
    } catch (cause) {
      throw new Error(`onnxruntime could not load model version ${version}`, { cause });
    }
    const slot = new ModelSlot(session, { version, contract }, options.maxCandidates ?? 1024);
    try {
      checkGraph(contract, session.inputMetadata, session.outputMetadata);
      // The first run allocates onnxruntime's buffers; pay it here rather than on a live request.
      const warm = (await Scorer.run(slot, 1, () => {})).logits;
      if (warm.length !== 1) throw new ContractError(`output "${contract.output.name}" has ${warm.length} values for 1 row`);
    } catch (error) {
      await session.release();
      throw error;
    }
    return slot;
  }

  private static async run(
    slot: ModelSlot,
    count: number,
    fill: RowFill,
    indicesInRange = false,
  ): Promise<{ logits: Float32Array; penultimate: Float32Array | undefined }> {
    const buffers = slot.acquire(count);
    try {
      const { nDense, nFields, vocabularySizes, sharedVocabularySize } = slot;
      const dense = buffers.dense.subarray(0, count * nDense);
      const categorical = buffers.categorical.subarray(0, count * nFields);
      fill(dense, categorical);
      // An index the model has no row for would fail the whole run inside Gather; it scores as unknown (0) instead.
      // Unsigned comparisons: a negative index wraps to a huge one and fails the same test. One flat loop when the
      // fields share a size: about 2.5 times faster than a loop per row and field, 55 us at 1000 rows of 30 fields.
      if (!indicesInRange) {
        if (sharedVocabularySize >= 0) {
          for (let i = 0; i < categorical.length; i++) if (categorical[i]! >>> 0 >= sharedVocabularySize) categorical[i] = 0;
        } else {
          for (let r = 0, i = 0; r < count; r++) {
            for (let f = 0; f < nFields; f++, i++) if (categorical[i]! >>> 0 >= vocabularySizes[f]!) categorical[i] = 0;
          }
        }
      }
      const { contract } = slot.info;
      let categoricalTensor: ort.Tensor;
      if (buffers.categorical64) {
        const wide = buffers.categorical64.subarray(0, count * nFields);
        for (let i = 0; i < categorical.length; i++) wide[i] = BigInt(categorical[i]!);
        categoricalTensor = new ort.Tensor('int64', wide, [count, nFields]);
      } else {
        categoricalTensor = new ort.Tensor('int32', categorical, [count, nFields]);
      }
      const out = await slot.session.run({
        [contract.dense.input]: new ort.Tensor('float32', dense, [count, nDense]),
        [contract.categorical.input]: categoricalTensor,
      });
      const logits = out[contract.output.name]!.data as Float32Array;
      if (logits.length !== count) {
        throw new ContractError(`output "${contract.output.name}" has ${logits.length} values for ${count} rows`);
      }
      const penultimateName = contract.output.penultimate;
      return { logits, penultimate: penultimateName ? (out[penultimateName]!.data as Float32Array) : undefined };
    } finally {
      slot.release(buffers);
    }
  }

  /** The model version serving new requests. */
  get model(): ModelInfo {
    return this.current.info;
  }

  /** Scores `count` candidates written by `fill` in one session run. */
  async scoreWith(count: number, fill: RowFill, options: ScoreWithOptions = {}): Promise<ScoreResult> {
    const { wideLogits } = options;
    if (this.closed) throw new Error('scorer is closed');
    const slot = this.current;
    const scores = new Float32Array(count);
    if (count === 0) return { scores, logits: new Float32Array(0), version: slot.info.version };
    if (wideLogits && wideLogits.length !== count) {
      throw new RangeError(`${wideLogits.length} wide logits for ${count} candidates`);
    }
    slot.enter();
    try {
      const { logits, penultimate } = await Scorer.run(slot, count, fill, options.indicesInRange);
      if (wideLogits) for (let i = 0; i < count; i++) scores[i] = sigmoid(logits[i]! + wideLogits[i]!);
      else for (let i = 0; i < count; i++) scores[i] = sigmoid(logits[i]!);
      return penultimate
        ? { scores, logits, penultimate, version: slot.info.version }
        : { scores, logits, version: slot.info.version };
    } finally {
      slot.leave();
    }
  }

  /** Click probability per row, in order. */
  async score(rows: readonly FeatureRow[]): Promise<Float32Array> {
    const { nDense, nFields } = this.current;
    const fill: RowFill = (dense, categorical) => {
      rows.forEach((row, i) => {
        if (row.dense.length !== nDense || row.categorical.length !== nFields) {
          throw new RangeError(
            `row ${i} has ${row.dense.length} dense and ${row.categorical.length} categorical values; ` +
              `the model takes ${nDense} and ${nFields}`,
          );
        }
        dense.set(row.dense, i * nDense);
        categorical.set(row.categorical, i * nFields);
      });
    };
    const wide = this.options.wideLogit?.(rows);
    return (await this.scoreWith(rows.length, fill, { wideLogits: wide })).scores;
  }

  /**
   * Loads, checks and warms up a new version, then makes it serve new requests. Rejects (and leaves the current
   * version serving) when the bytes are not a model or its contract does not match the layout.
   */
  swap(modelBytes: Uint8Array, version: string): Promise<ModelInfo> {
    const swapped = this.swapChain.then(async () => {
      if (this.closed) throw new Error('scorer is closed');
      const next = await Scorer.load(modelBytes, version, this.options);
      if (this.closed) {
        next.retire();
        throw new Error('scorer is closed');
      }
      const previous = this.current;
      this.current = next;
      previous.retire();
      return next.info;
    });
    this.swapChain = swapped.catch(() => undefined);
    return swapped;
  }

  /** Stops taking requests; the session is released once running requests finish. */
  async close(): Promise<void> {
    await this.swapChain;
    if (this.closed) return;
    this.closed = true;
    this.current.retire();
  }
}
