/**
 * Exports a `Ranker` as an ONNX graph (opset 13) whose input contract sits in `metadata_props`, so the Scorer can
 * refuse it when the rows it would score are laid out differently.
 */
import { CONTRACT_VERSION, contractMetadata, type ModelContract } from '../onnx/contract.js';
import {
  encodeModel,
  floatTensor,
  int32Tensor,
  int64Tensor,
  node,
  valueInfo,
  type NodeProto,
  type TensorProto,
} from '../onnx/proto.js';
import type { Ranker } from './ranker.js';

export const DENSE_INPUT = 'dense';
export const CATEGORICAL_INPUT = 'categorical';
export const LOGIT_OUTPUT = 'logit';
export const PENULTIMATE_OUTPUT = 'penultimate';

export interface ExportOptions {
  /** Element type of the categorical input. Default 'int32'; 'int64' matches what PyTorch embeddings take. */
  readonly categoricalDtype?: 'int32' | 'int64';
  /**
   * Also output the final layer's input as `penultimate` [batch, width] (MLP kinds only), so an online learner can
   * fine-tune the last layer on top of the frozen network. Default false.
   */
  readonly penultimateOutput?: boolean;
}

export function contractOf(ranker: Ranker, options: ExportOptions = {}): ModelContract {
  return {
    contractVersion: CONTRACT_VERSION,
    modelKind: ranker.kind,
    dense: { input: DENSE_INPUT, dtype: 'float32', features: [...ranker.denseFeatures] },
    categorical: {
      input: CATEGORICAL_INPUT,
      dtype: options.categoricalDtype ?? 'int32',
      fields: ranker.categoricalFields.map((f) => ({ name: f.name, vocabularySize: f.vocabularySize })),
    },
    output: options.penultimateOutput ? { name: LOGIT_OUTPUT, penultimate: PENULTIMATE_OUTPUT } : { name: LOGIT_OUTPUT },
  };
}

/** Serializes the ranker's current parameters (rounded to float32) as an ONNX model. */
export function exportOnnx(ranker: Ranker, options: ExportOptions = {}): Uint8Array {
  const indexType = options.categoricalDtype ?? 'int32';
  if (options.penultimateOutput && !ranker.architecture.mlp) {
    throw new Error(`a ${ranker.kind} has no final layer to expose; penultimateOutput needs an MLP kind`);
  }
  const p = ranker.params;
  const d = ranker.nDense;
  const nFields = ranker.nFields;
  const k = ranker.embeddingDim;
  const { linear, fm, mlp } = ranker.architecture;
  const { bias, wDense, wCategorical, embeddings, vDense, layers } = ranker.layout;
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const block = (at: number, n: number) => p.subarray(at, at + n);
  const terms: string[] = [];

  initializers.push(
    indexType === 'int64'
      ? int64Tensor('field_offsets', [nFields], Array.from(ranker.fieldOffsets))
      : int32Tensor('field_offsets', [nFields], ranker.fieldOffsets),
  );
  nodes.push(node('Add', [CATEGORICAL_INPUT, 'field_offsets'], ['table_rows']));
  if (linear || fm) initializers.push(int64Tensor('axis_1', [1], [1]));

  if (linear) {
    initializers.push(
      floatTensor('bias', [1], block(bias, 1)),
      floatTensor('w_dense', [d, 1], block(wDense, d)),
      floatTensor('w_categorical', [ranker.vocabularySize], block(wCategorical, ranker.vocabularySize)),
    );
    nodes.push(
      node('MatMul', [DENSE_INPUT, 'w_dense'], ['linear_dense']),
      node('Gather', ['w_categorical', 'table_rows'], ['linear_categorical_terms']),
      node('ReduceSum', ['linear_categorical_terms', 'axis_1'], ['linear_categorical'], { keepdims: 1 }),
      node('Add', ['linear_dense', 'linear_categorical'], ['linear_unbiased']),
      node('Add', ['linear_unbiased', 'bias'], ['linear']),
    );
    terms.push('linear');
  }
  if (fm || mlp) {
    initializers.push(floatTensor('embeddings', [ranker.vocabularySize, k], block(embeddings, ranker.vocabularySize * k)));
    nodes.push(node('Gather', ['embeddings', 'table_rows'], ['field_embeddings'], { axis: 0 }));
  }
  if (fm) {
    initializers.push(
      floatTensor('v_dense', [d, k], block(vDense, d * k)),
      int64Tensor('axis_2', [1], [2]),
      floatTensor('half', [], [0.5]),
    );
    nodes.push(
      node('Unsqueeze', [DENSE_INPUT, 'axis_2'], ['dense_column']),
      node('Mul', ['dense_column', 'v_dense'], ['dense_embeddings']),
      node('Concat', ['dense_embeddings', 'field_embeddings'], ['fm_vectors'], { axis: 1 }),
      node('ReduceSum', ['fm_vectors', 'axis_1'], ['fm_sum'], { keepdims: 0 }),
      node('Mul', ['fm_sum', 'fm_sum'], ['fm_sum_squared']),
      node('Mul', ['fm_vectors', 'fm_vectors'], ['fm_vectors_squared']),
      node('ReduceSum', ['fm_vectors_squared', 'axis_1'], ['fm_squares'], { keepdims: 0 }),
      node('Sub', ['fm_sum_squared', 'fm_squares'], ['fm_pairs']),
      node('ReduceSum', ['fm_pairs', 'axis_1'], ['fm_double'], { keepdims: 1 }),
      node('Mul', ['fm_double', 'half'], ['fm']),
    );
    terms.push('fm');
  }
  if (mlp) {
    initializers.push(int64Tensor('flat_embeddings_shape', [2], [0, nFields * k]));
    nodes.push(
      node('Reshape', ['field_embeddings', 'flat_embeddings_shape'], ['flat_embeddings']),
      node('Concat', [DENSE_INPUT, 'flat_embeddings'], ['mlp_0'], { axis: 1 }),
    );
    layers.forEach((layer, l) => {
      const last = l + 1 === layers.length;
      initializers.push(
        floatTensor(`mlp_w_${l}`, [layer.inputs, layer.outputs], block(layer.weights, layer.inputs * layer.outputs)),
        floatTensor(`mlp_b_${l}`, [layer.outputs], block(layer.biases, layer.outputs)),
      );
      const pre = last ? 'mlp' : `mlp_pre_${l + 1}`;
      nodes.push(node('Gemm', [`mlp_${l}`, `mlp_w_${l}`, `mlp_b_${l}`], [pre]));
      if (!last) nodes.push(node('Relu', [pre], [`mlp_${l + 1}`]));
    });
    terms.push('mlp');
    if (options.penultimateOutput) nodes.push(node('Identity', [`mlp_${layers.length - 1}`], [PENULTIMATE_OUTPUT]));
  }

  let sum = terms[0]!;
  for (let t = 1; t < terms.length; t++) {
    const out = `sum_${t}`;
    nodes.push(node('Add', [sum, terms[t]!], [out]));
    sum = out;
  }
  nodes.push(node('Identity', [sum], [LOGIT_OUTPUT]));

  return encodeModel({
    graphName: `eddy_${ranker.kind.replaceAll('-', '_')}`,
    docString: `Eddy ${ranker.kind} ranker`,
    nodes,
    initializers,
    inputs: [valueInfo(DENSE_INPUT, 'float32', ['batch', d]), valueInfo(CATEGORICAL_INPUT, indexType, ['batch', nFields])],
    outputs: [
      valueInfo(LOGIT_OUTPUT, 'float32', ['batch', 1]),
      ...(options.penultimateOutput ? [valueInfo(PENULTIMATE_OUTPUT, 'float32', ['batch', layers.at(-1)!.inputs])] : []),
    ],
    metadata: contractMetadata(contractOf(ranker, options)),
  });
}
