/**
 * The input contract an ONNX ranker declares in its `metadata_props` under `eddy.contract`, and the checks that keep
 * a model from scoring rows laid out for another model.
 *
 * Contract version 1, as JSON:
 * {
 *   "contractVersion": 1,
 *   "modelKind": "deepfm",
 *   "dense":       { "input": "dense", "dtype": "float32", "features": ["price", "ctr_7d"] },
 *   "categorical": { "input": "categorical", "dtype": "int32",
 *                    "fields": [{ "name": "category", "vocabularySize": 1000 }] },
 *   "output":      { "name": "logit" }
 * }
 * `dense` is a [batch, features.length] float32 input; `categorical` is a [batch, fields.length] int32 or int64 input
 * of per-field indices in [0, vocabularySize), index 0 meaning unknown; `output.name` is a float32 [batch, 1] (or
 * [batch]) logit, and the optional `output.penultimate` a float32 [batch, width] output of the final layer's input.
 */
import { z } from 'zod';
import { readMetadata } from './proto.js';

export const CONTRACT_KEY = 'eddy.contract';
export const CONTRACT_VERSION = 1;

const nameSchema = z.string().min(1);

export const contractSchema = z
  .object({
    contractVersion: z.literal(CONTRACT_VERSION),
    modelKind: nameSchema,
    dense: z.object({
      input: nameSchema,
      dtype: z.literal('float32'),
      features: z.array(nameSchema).min(1),
    }),
    categorical: z.object({
      input: nameSchema,
      dtype: z.enum(['int32', 'int64']),
      fields: z.array(z.object({ name: nameSchema, vocabularySize: z.number().int().positive() })).min(1),
    }),
    output: z
      .object({
        name: nameSchema,
        /** Optional second output: the input of the final layer, [batch, width], for online fine-tuning of that layer. */
        penultimate: nameSchema.optional(),
      })
      .strict(),
  })
  .strict();

export type ModelContract = z.infer<typeof contractSchema>;

/** What the rows a caller assembles carry, in order: the side of the contract that serving controls. */
export interface FeatureLayout {
  readonly denseFeatures: readonly string[];
  readonly categoricalFields: readonly string[];
}

export class ContractError extends Error {
  override readonly name = 'ContractError';
}

export function contractMetadata(contract: ModelContract): Record<string, string> {
  return { [CONTRACT_KEY]: JSON.stringify(contract) };
}

/** Reads and validates the contract a model declares; throws a `ContractError` saying what is missing or malformed. */
export function readContract(modelBytes: Uint8Array): ModelContract {
  const metadata = readMetadata(modelBytes);
  const raw = metadata[CONTRACT_KEY];
  if (raw === undefined) {
    throw new ContractError(`model declares no input contract: metadata_props has no "${CONTRACT_KEY}" entry`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (cause) {
    throw new ContractError(`"${CONTRACT_KEY}" is not JSON`, { cause });
  }
  const parsed = contractSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') || '(root)';
    throw new ContractError(`"${CONTRACT_KEY}" is invalid at ${where}: ${issue?.message ?? 'unknown issue'}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}

function firstDifference(what: string, model: readonly string[], rows: readonly string[]): string | undefined {
  for (let i = 0; i < Math.max(model.length, rows.length); i++) {
    if (model[i] !== rows[i]) {
      return (
        `${what} ${i}: the model expects ${model[i] === undefined ? 'nothing' : `"${model[i]}"`} ` +
        `but the rows carry ${rows[i] === undefined ? 'nothing' : `"${rows[i]}"`} ` +
        `(model has ${model.length}, rows have ${rows.length})`
      );
    }
  }
  return undefined;
}

/** Throws a `ContractError` naming the first feature where the model's contract and the row layout disagree. */
export function checkContract(contract: ModelContract, layout: FeatureLayout): void {
  const problem =
    firstDifference('dense feature', contract.dense.features, layout.denseFeatures) ??
    firstDifference(
      'categorical field',
      contract.categorical.fields.map((f) => f.name),
      layout.categoricalFields,
    );
  if (problem !== undefined) throw new ContractError(`contract mismatch (${contract.modelKind}): ${problem}`);
}

/** The shape of a session's declared input or output, as onnxruntime reports it. */
export interface ValueMetadata {
  readonly name: string;
  readonly isTensor: boolean;
  readonly type?: string;
  readonly shape?: readonly (number | string)[];
}

/** Checks that the graph's actual inputs and output match what its contract declares. */
export function checkGraph(
  contract: ModelContract,
  inputs: readonly ValueMetadata[],
  outputs: readonly ValueMetadata[],
): void {
  const expectInput = (name: string, dtype: string, width: number) => {
    const input = inputs.find((i) => i.name === name);
    if (!input) throw new ContractError(`the contract names input "${name}" but the graph has none (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    if (input.type !== dtype) throw new ContractError(`input "${name}" is ${input.type} in the graph but ${dtype} in the contract`);
    const shape = input.shape ?? [];
    const lastDim = shape[1];
    if (shape.length !== 2 || (typeof lastDim === 'number' && lastDim !== width)) {
      throw new ContractError(`input "${name}" has shape [${shape.join(', ')}] in the graph; the contract implies [batch, ${width}]`);
    }
  };
  expectInput(contract.dense.input, contract.dense.dtype, contract.dense.features.length);
  expectInput(contract.categorical.input, contract.categorical.dtype, contract.categorical.fields.length);
  if (inputs.length !== 2) {
    throw new ContractError(`the graph has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); a contract-1 model has exactly 2`);
  }
  const output = outputs.find((o) => o.name === contract.output.name);
  if (!output) throw new ContractError(`the contract names output "${contract.output.name}" but the graph has none`);
  if (output.type !== 'float32') throw new ContractError(`output "${output.name}" is ${output.type}; it must be float32`);
  const penultimate = contract.output.penultimate;
  if (penultimate !== undefined) {
    const hidden = outputs.find((o) => o.name === penultimate);
    if (!hidden) throw new ContractError(`the contract names penultimate output "${penultimate}" but the graph has none`);
    if (hidden.type !== 'float32' || hidden.shape?.length !== 2) {
      throw new ContractError(`penultimate output "${penultimate}" must be float32 [batch, width]`);
    }
  }
}
