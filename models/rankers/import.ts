/**
 * Rebuilds a `Ranker` from an ONNX model that `exportOnnx` wrote: the contract in its metadata gives the kind,
 * features and fields, the initializers give the parameters. The trainer uses it to run the served model's forward
 * pass in TypeScript (penultimate activations for the online head) from the very bytes serving loaded, so the two
 * cannot drift apart. A model exported elsewhere can be served, but it has no Eddy initializers to rebuild from.
 */
import { createHash } from 'node:crypto';
import { readContract } from '../onnx/contract.js';
import type onnxProto from 'onnx-proto';
import { ElementType, onnx, type TensorProto } from '../onnx/proto.js';
import { Ranker, type RankerKind } from './ranker.js';

const RANKER_KINDS: readonly RankerKind[] = ['logistic-regression', 'factorization-machine', 'deepfm', 'embedding-mlp'];

export class RankerImportError extends Error {
  override readonly name = 'RankerImportError';
}

interface Initializer {
  readonly dims: readonly number[];
  readonly values: Float32Array;
}

function float32Values(tensor: TensorProto): Float32Array {
  if (tensor.rawData && tensor.rawData.length > 0) {
    // Copy: the raw bytes may sit at an offset that is not a multiple of 4 inside the decoded buffer.
    const bytes = Uint8Array.from(tensor.rawData);
    return new Float32Array(bytes.buffer, 0, bytes.length / 4);
  }
  return Float32Array.from(tensor.floatData ?? []);
}

function floatInitializers(graph: onnxProto.onnx.IGraphProto): Map<string, Initializer> {
  const byName = new Map<string, Initializer>();
  for (const tensor of graph.initializer ?? []) {
    if (tensor.dataType !== ElementType.float32 || !tensor.name) continue;
    byName.set(tensor.name, { dims: (tensor.dims ?? []).map(Number), values: float32Values(tensor) });
  }
  return byName;
}

/** Reads an `exportOnnx` model back into a Ranker with the same parameters (as float32, widened to float64). */
export function importOnnx(modelBytes: Uint8Array): Ranker {
  const contract = readContract(modelBytes);
  const kind = contract.modelKind as RankerKind;
  if (!RANKER_KINDS.includes(kind)) {
    throw new RankerImportError(`model kind "${contract.modelKind}" is not one Eddy builds (${RANKER_KINDS.join(', ')}); only Eddy-exported rankers can be imported`);
  }
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(modelBytes);
  } catch (cause) {
    throw new RankerImportError('model bytes are not an ONNX ModelProto', { cause });
  }
  const initializers = floatInitializers(model.graph ?? {});
  const required = (name: string): Initializer => {
    const found = initializers.get(name);
    if (!found) throw new RankerImportError(`a ${kind} exported by Eddy has a float initializer "${name}"; this model has none`);
    return found;
  };

  const hidden: number[] = [];
  for (let l = 0; initializers.has(`mlp_w_${l}`); l++) hidden.push(required(`mlp_w_${l}`).dims[1]!);
  // The last Gemm is the output unit, not a hidden layer.
  hidden.pop();
  const embeddings = initializers.get('embeddings');
  const ranker = new Ranker({
    kind,
    denseFeatures: contract.dense.features,
    categoricalFields: contract.categorical.fields,
    ...(embeddings ? { embeddingDim: embeddings.dims[1]! } : {}),
    ...(hidden.length > 0 ? { hidden } : {}),
  });

  const p = ranker.params;
  const load = (name: string, at: number, length: number) => {
    const { values } = required(name);
    if (values.length !== length) {
      throw new RankerImportError(`initializer "${name}" has ${values.length} values; the contract implies ${length}`);
    }
    for (let i = 0; i < length; i++) p[at + i] = values[i]!;
  };
  const { bias, wDense, wCategorical, vDense, layers } = ranker.layout;
  const { linear, fm, mlp } = ranker.architecture;
  if (linear) {
    load('bias', bias, 1);
    load('w_dense', wDense, ranker.nDense);
    load('w_categorical', wCategorical, ranker.vocabularySize);
  }
  if (fm || mlp) load('embeddings', ranker.layout.embeddings, ranker.vocabularySize * ranker.embeddingDim);
  if (fm) load('v_dense', vDense, ranker.nDense * ranker.embeddingDim);
  if (mlp) {
    if (initializers.has(`mlp_w_${layers.length}`) || layers.length === 0) {
      throw new RankerImportError(`the MLP's layers do not match a ${kind} with hidden widths [${hidden.join(', ')}]`);
    }
    layers.forEach((layer, l) => {
      load(`mlp_w_${l}`, layer.weights, layer.inputs * layer.outputs);
      load(`mlp_b_${l}`, layer.biases, layer.outputs);
    });
  }
  return ranker;
}

/** A short content digest of model bytes: names the exact model an online head was learned on. */
export function onnxDigest(modelBytes: Uint8Array): string {
  return createHash('sha256').update(modelBytes).digest('hex').slice(0, 16);
}
