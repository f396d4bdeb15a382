/**
 * Renders a kustomize tree in-process, for the manifest tests (no kustomize binary on these machines). It supports
 * exactly the fields Eddy's tree uses (resources, configMapGenerator, labels, namespace, images, strategic-merge
 * patches with or without a target) and refuses any other field, so the tree cannot silently outgrow it.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  [field: string]: unknown;
}

interface PatchEntry {
  readonly path?: string;
  readonly patch?: string;
  readonly target?: { readonly kind?: string; readonly name?: string };
}

interface Kustomization {
  readonly resources?: readonly string[];
  readonly configMapGenerator?: readonly {
    readonly name: string;
    readonly files?: readonly string[];
    readonly literals?: readonly string[];
    readonly options?: { readonly disableNameSuffixHash?: boolean; readonly labels?: Record<string, string> };
  }[];
  readonly labels?: readonly { readonly pairs: Record<string, string>; readonly includeSelectors?: boolean }[];
  readonly namespace?: string;
  readonly images?: readonly { readonly name: string; readonly newName?: string; readonly newTag?: string }[];
  readonly patches?: readonly PatchEntry[];
}

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'labels', 'namespace', 'images', 'patches']);

/** Kinds that are not namespaced among those the tree uses. */
const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);

/** Strategic-merge list keys of the built-in fields the patches touch; other lists are replaced, as for CRDs. */
const MERGE_KEYS: Readonly<Record<string, string>> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
};

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

export function parseYamlDocuments(text: string, origin: string): K8sObject[] {
  return parseAllDocuments(text).flatMap((document) => {
    if (document.errors.length > 0) throw new Error(`${origin}: ${document.errors[0]!.message}`);
    const value = document.toJS() as unknown;
    if (value === null || value === undefined) return [];
    if (!isObject(value) || typeof value.kind !== 'string' || typeof value.apiVersion !== 'string') {
      throw new Error(`${origin}: a document without apiVersion and kind`);
    }
    return [value as K8sObject];
  });
}

function strategicMerge(base: unknown, patch: unknown, field = '', builtIn = true): unknown {
  if (isObject(base) && isObject(patch)) {
    const merged: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete merged[key];
      else merged[key] = strategicMerge(base[key], value, key, builtIn);
    }
    return merged;
  }
  const key = builtIn ? MERGE_KEYS[field] : undefined;
  if (key && Array.isArray(base) && Array.isArray(patch)) {
    const merged = base.map((item) => structuredClone(item) as unknown);
    for (const item of patch) {
      const index = merged.findIndex((existing) => isObject(existing) && isObject(item) && existing[key] === item[key]);
      if (index >= 0) merged[index] = strategicMerge(merged[index], item, '', builtIn);
      else merged.push(structuredClone(item));
    }
    return merged;
  }
  return structuredClone(patch);
}

const isBuiltIn = (apiVersion: string) => !apiVersion.includes('.') || apiVersion.includes('.k8s.io/');

function applyPatch(objects: K8sObject[], patch: K8sObject, target: PatchEntry['target'], origin: string): K8sObject[] {
  let applied = 0;
  const result = objects.map((object) => {
    const matches = target
      ? (target.kind === undefined || object.kind === target.kind) && (target.name === undefined || new RegExp(`^${target.name}$`).test(object.metadata.name))
      : object.kind === patch.kind && object.metadata.name === patch.metadata.name;
    if (!matches) return object;
    applied++;
    // With a target, the patch's own name is a placeholder and must not rename anything.
    const { metadata, ...body } = patch;
    const { name: _placeholder, ...metadataPatch } = metadata;
    return strategicMerge(object, { ...body, metadata: metadataPatch }, '', isBuiltIn(object.apiVersion)) as K8sObject;
  });
  if (applied === 0) throw new Error(`${origin}: the patch matches no resource`);
  return result;
}

function podSpecs(object: K8sObject): Record<string, unknown>[] {
  const template = (object.spec as { template?: { spec?: Record<string, unknown> } } | undefined)?.template;
  return template?.spec ? [template.spec] : [];
}

/** Renders the kustomization in `directory` to its list of objects. */
export function kustomizeBuild(directory: string): K8sObject[] {
  const file = join(directory, 'kustomization.yaml');
  const kustomization = parse(readFileSync(file, 'utf8')) as Kustomization;
  const unsupported = Object.keys(kustomization).filter((key) => !SUPPORTED.has(key));
  if (unsupported.length > 0) throw new Error(`${file}: unsupported fields ${unsupported.join(', ')}`);

  let objects: K8sObject[] = [];
  for (const resource of kustomization.resources ?? []) {
    const path = join(directory, resource);
    objects.push(...(statSync(path).isDirectory() ? kustomizeBuild(path) : parseYamlDocuments(readFileSync(path, 'utf8'), path)));
  }

  for (const generator of kustomization.configMapGenerator ?? []) {
    if (!generator.options?.disableNameSuffixHash) throw new Error(`${file}: ${generator.name}: name suffix hashes are not supported`);
    const data: Record<string, string> = {};
    for (const source of generator.files ?? []) data[basename(source)] = readFileSync(join(directory, source), 'utf8');
    for (const literal of generator.literals ?? []) {
      const at = literal.indexOf('=');
      data[literal.slice(0, at)] = literal.slice(at + 1);
    }
    objects.push({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: generator.name, ...(generator.options.labels ? { labels: { ...generator.options.labels } } : {}) },
      data,
    });
  }

  for (const entry of kustomization.patches ?? []) {
    const origin = entry.path ? join(directory, entry.path) : `${file} inline patch`;
    const text = entry.path ? readFileSync(join(directory, entry.path), 'utf8') : entry.patch ?? '';
    const documents = parseYamlDocuments(text, origin);
    if (documents.length !== 1) throw new Error(`${origin}: one patch per file`);
    objects = applyPatch(objects, documents[0]!, entry.target, origin);
  }

  for (const { pairs, includeSelectors } of kustomization.labels ?? []) {
    if (includeSelectors) throw new Error(`${file}: labels with includeSelectors are not supported`);
    for (const object of objects) object.metadata.labels = { ...object.metadata.labels, ...pairs };
  }

  if (kustomization.namespace) {
    for (const object of objects) if (!CLUSTER_SCOPED.has(object.kind)) object.metadata.namespace = kustomization.namespace;
  }

  for (const image of kustomization.images ?? []) {
    for (const spec of objects.flatMap(podSpecs)) {
      for (const container of [...((spec.containers as { image: string }[]) ?? []), ...((spec.initContainers as { image: string }[]) ?? [])]) {
        const [name, tag] = container.image.split(/:(?=[^/:]+$)/);
        if (name !== image.name) continue;
        container.image = `${image.newName ?? name}:${image.newTag ?? tag}`;
      }
    }
  }

  const seen = new Set<string>();
  for (const object of objects) {
    const id = `${object.kind}/${object.metadata.namespace ?? ''}/${object.metadata.name}`;
    if (seen.has(id)) throw new Error(`${directory}: ${id} is defined twice`);
    seen.add(id);
  }
  return objects;
}


interface EnvSources {
  readonly env?: readonly { readonly name: string; readonly value?: string }[];
  readonly envFrom?: readonly { readonly configMapRef?: { readonly name: string }; readonly secretRef?: { readonly name: string } }[];
}

function find(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}

/**
 * The environment a container starts with: its ConfigMaps and Secrets (envFrom), then its own env (which wins).
 * Also what a test needs to start a role the way its pod would.
 */
export function containerEnv(objects: readonly K8sObject[], container: EnvSources): Map<string, string> {
  const env = new Map<string, string>();
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) {
      const data = (find(objects, 'ConfigMap', source.configMapRef.name).data ?? {}) as Record<string, string>;
      for (const [key, value] of Object.entries(data)) env.set(key, value);
    }
    if (source.secretRef) {
      const secret = find(objects, 'Secret', source.secretRef.name) as K8sObject & { stringData?: Record<string, string>; data?: Record<string, string> };
      for (const [key, value] of Object.entries(secret.stringData ?? {})) env.set(key, value);
      for (const [key, value] of Object.entries(secret.data ?? {})) env.set(key, Buffer.from(value, 'base64').toString('utf8'));
    }
  }
  for (const variable of container.env ?? []) env.set(variable.name, variable.value ?? '');
  return env;
}
