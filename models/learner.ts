/**
 * The Learner seam: `learn(sample)`, `predict(features)` and `export()` to a model version. River-style: one sample
 * at a time, no batches, no epochs, so a learner can sit at the end of a stream and learn from every click.
 */

/**
 * Hashed sparse features: bucket indices and their values. `values` may be omitted, meaning every value is 1 (one-hot
 * categorical features). Learners reduce indices modulo their bucket count.
 */
export interface SparseFeatures {
  readonly indices: ArrayLike<number>;
  readonly values?: ArrayLike<number>;
}

export interface Sample<F = SparseFeatures> {
  readonly features: F;
  readonly label: 0 | 1;
  /** Importance weight of this sample's loss. Default 1. */
  readonly weight?: number;
}

/** Anything that turns features into a click probability; exported model versions load as predictors. */
export interface Predictor<F = SparseFeatures> {
  predict(features: F): number;
}

export interface Learner<F = SparseFeatures> extends Predictor<F> {
  /** Names the algorithm; model versions carry it so a loader knows how to read their tensors. */
  readonly kind: string;
  readonly samplesSeen: number;
  /** Learns from one sample and returns the probability predicted before the update (progressive validation). */
  learn(sample: Sample<F>): number;
  /** A self-contained copy of the current model: weights for serving plus the state needed to resume learning. */
  export(meta: ExportMeta): ModelVersion;
  /** Continues from an exported version of the same kind and shape (used when a version is rolled back). */
  restore(version: ModelVersion): void;
}

export interface ExportMeta {
  readonly model: string;
  readonly version: string;
  readonly parent: string | null;
  /** Default `Date.now()`. */
  readonly createdAt?: number;
}

/** The fields every learner's export shares: identity and lineage from `meta`, then the learner's own kind and count. */
export function versionHeader(meta: ExportMeta, kind: string, samplesSeen: number): Pick<ModelVersion, 'model' | 'version' | 'parent' | 'createdAt' | 'kind' | 'samplesSeen'> {
  return { model: meta.model, version: meta.version, parent: meta.parent, createdAt: meta.createdAt ?? Date.now(), kind, samplesSeen };
}

export type TensorData = Float32Array | Float64Array | Uint32Array;

/** One published model: what it is, where it came from, and its tensors. Serialisable with `encodeModelVersion`. */
export interface ModelVersion {
  readonly model: string;
  readonly version: string;
  readonly kind: string;
  readonly parent: string | null;
  readonly createdAt: number;
  readonly samplesSeen: number;
  /** Hyper-parameters and shapes needed to load the tensors. */
  readonly params: Readonly<Record<string, number | string | boolean>>;
  readonly tensors: Readonly<Record<string, TensorData>>;
}

interface EncodedTensor {
  readonly dtype: 'float32' | 'float64' | 'uint32';
  readonly base64: string;
}

function dtypeOf(data: TensorData): EncodedTensor['dtype'] {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  return 'uint32';
}

/** JSON text for the `models` topic; tensors travel as little-endian base64. */
export function encodeModelVersion(version: ModelVersion): string {
  const tensors: Record<string, EncodedTensor> = {};
  for (const [name, data] of Object.entries(version.tensors)) {
    tensors[name] = {
      dtype: dtypeOf(data),
      base64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'),
    };
  }
  return JSON.stringify({ ...version, tensors });
}

/** Reads `encodeModelVersion` output back, with an error that names what is wrong. */
export function decodeModelVersion(text: string): ModelVersion {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new Error('model version is not valid JSON', { cause });
  }
  const record = raw as Record<string, unknown>;
  for (const field of ['model', 'version', 'kind'] as const) {
    if (typeof record?.[field] !== 'string') throw new Error(`model version: "${field}" must be a string`);
  }
  if (record.parent !== null && typeof record.parent !== 'string') throw new Error('model version: "parent" must be a string or null');
  if (typeof record.createdAt !== 'number' || typeof record.samplesSeen !== 'number') {
    throw new Error('model version: "createdAt" and "samplesSeen" must be numbers');
  }
  if (typeof record.params !== 'object' || record.params === null) throw new Error('model version: "params" must be an object');
  if (typeof record.tensors !== 'object' || record.tensors === null) throw new Error('model version: "tensors" must be an object');
  const tensors: Record<string, TensorData> = {};
  for (const [name, encoded] of Object.entries(record.tensors as Record<string, EncodedTensor>)) {
    if (typeof encoded?.base64 !== 'string') throw new Error(`model version: tensor "${name}" has no base64 data`);
    const bytes = Buffer.from(encoded.base64, 'base64');
    // Copy into a fresh, aligned buffer: Buffer.from may share a pool slab at an odd offset.
    const aligned = new Uint8Array(bytes.length);
    aligned.set(bytes);
    const width = encoded.dtype === 'float64' ? 8 : 4;
    if (aligned.length % width !== 0) throw new Error(`model version: tensor "${name}" has ${aligned.length} bytes, not a multiple of ${width}`);
    if (encoded.dtype === 'float32') tensors[name] = new Float32Array(aligned.buffer);
    else if (encoded.dtype === 'float64') tensors[name] = new Float64Array(aligned.buffer);
    else if (encoded.dtype === 'uint32') tensors[name] = new Uint32Array(aligned.buffer);
    else throw new Error(`model version: tensor "${name}" has unknown dtype ${String(encoded.dtype)}`);
  }
  return { ...(record as unknown as ModelVersion), tensors };
}

/** The tensor `name` of `version`, checked for type and length. */
export function tensorOf<T extends TensorData>(
  version: ModelVersion,
  name: string,
  type: new (length: number) => T,
  length?: number,
): T {
  const data = version.tensors[name];
  if (!(data instanceof type)) throw new Error(`model ${version.model}@${version.version}: tensor "${name}" is missing or not a ${type.name}`);
  if (length !== undefined && data.length !== length) {
    throw new Error(`model ${version.model}@${version.version}: tensor "${name}" has length ${data.length}, expected ${length}`);
  }
  return data;
}

export function numberParam(version: ModelVersion, name: string): number {
  const value = version.params[name];
  if (typeof value !== 'number') throw new Error(`model ${version.model}@${version.version}: param "${name}" must be a number`);
  return value;
}

export function sigmoid(logit: number): number {
  // Clamping keeps exp() finite and the probability strictly inside (0, 1).
  const x = logit > 35 ? 35 : logit < -35 ? -35 : logit;
  return 1 / (1 + Math.exp(-x));
}

/** Why a sample cannot be learned, or undefined when it can. */
export function sampleProblem(sample: Sample): string | undefined {
  if (sample.label !== 0 && sample.label !== 1) return `label must be 0 or 1, got ${String(sample.label)}`;
  if (sample.weight !== undefined && !(Number.isFinite(sample.weight) && sample.weight >= 0)) {
    return `weight must be a finite non-negative number, got ${sample.weight}`;
  }
  const features = sample.features;
  if (!features || typeof features.indices?.length !== 'number') return 'features.indices is missing';
  const { indices, values } = features;
  if (values !== undefined && values.length !== indices.length) {
    return `features.values has ${values.length} entries for ${indices.length} indices`;
  }
  for (let k = 0; k < indices.length; k++) {
    const index = indices[k]!;
    if (!Number.isInteger(index) || index < 0) return `features.indices[${k}] must be a non-negative integer, got ${index}`;
    if (values !== undefined && !Number.isFinite(values[k])) return `features.values[${k}] must be finite, got ${values[k]}`;
  }
  return undefined;
}
