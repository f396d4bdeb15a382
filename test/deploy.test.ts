import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { SETTINGS, SETTING_NAMES, loadConfig } from '../pipelines/config.js';
import { createMetrics } from '../connectors/observability/metrics.js';
import { containerEnv, kustomizeBuild, type K8sObject } from './support/kustomize.js';

const root = join(import.meta.dirname, '..');
const k8s = join(root, 'deploy', 'k8s');
const trees = { base: join(k8s, 'base'), dev: join(k8s, 'overlays', 'dev'), prod: join(k8s, 'overlays', 'prod') } as const;
const rendered = Object.fromEntries(Object.entries(trees).map(([name, dir]) => [name, kustomizeBuild(dir)])) as Record<keyof typeof trees, K8sObject[]>;

/** Standard variables the manifests may set besides Eddy's settings: NODE_ENV tells libraries they run in production. */
const STANDARD_ENV = new Set(['NODE_ENV']);
const ROLES = ['features', 'samples', 'trainer', 'serve'] as const;
const STREAM_ROLES = ['features', 'samples', 'trainer'] as const;
/** Every role reads or writes Kafka (serve consumes recommendation-requests and publishes pushes). */
const REQUIRED_ENV = ['KAFKA_BROKERS', 'EDDY_REDIS_URL'];
const COMPACTED_TOPICS = ['items', 'users', 'models'];

const MODELS: Readonly<Record<string, new (data: never) => { validate(): void }>> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
};
const CUSTOM_KINDS = new Set(['keda.sh/v1alpha1/ScaledObject', 'kafka.strimzi.io/v1beta2/KafkaTopic', 'monitoring.coreos.com/v1/ServiceMonitor']);

interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  topologySpreadConstraints?: { topologyKey: string; labelSelector?: { matchLabels?: Record<string, string> } }[];
  volumes?: { name: string; configMap?: { name: string } }[];
}
interface DeploymentLike extends K8sObject {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}

const ofKind = <T extends K8sObject = K8sObject>(objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind) as T[];
const named = <T extends K8sObject = K8sObject>(objects: K8sObject[], kind: string, name: string) => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found as T;
};
const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined) =>
  Object.entries(selector).every(([key, value]) => labels?.[key] === value);

/** CPU in cores or memory in bytes. */
function quantity(text: string): number {
  const match = /^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G)?$/.exec(text);
  if (!match) throw new Error(`not a quantity: ${text}`);
  const factor = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9 }[match[2] ?? ''] ?? 1;
  return Number(match[1]) * factor;
}

describe.each(Object.keys(trees) as (keyof typeof trees)[])('kustomize tree %s', (tree) => {
  const objects = rendered[tree];
  const deployments = ofKind<DeploymentLike>(objects, 'Deployment');
  const deploymentOf = (role: string) => named<DeploymentLike>(objects, 'Deployment', `eddy-${role}`);

  it('validates every built-in object against the Kubernetes schema and knows every custom kind', () => {
    const kinds = new Set<string>();
    for (const object of objects) {
      const type = `${object.apiVersion}/${object.kind}`;
      kinds.add(type);
      const Model = MODELS[type];
      if (Model) expect(() => new Model(object as never).validate(), `${type} ${object.metadata.name}`).not.toThrow();
      else expect(CUSTOM_KINDS.has(type), `unexpected kind ${type}`).toBe(true);
    }
    expect([...kinds].sort()).toEqual([...Object.keys(MODELS), ...CUSTOM_KINDS].sort());
  });

  it('runs each role as a Deployment of the image with its role argument', () => {
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(ROLES.map((r) => `eddy-${r}`).sort());
    for (const role of ROLES) {
      const deployment = deploymentOf(role);
      const [container] = deployment.spec.template.spec.containers;
      expect(container?.args).toEqual([role]);
      expect(container?.image).toMatch(/^ghcr\.io\/eddy-recsys\/eddy:[0-9]/);
      expect(matches(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels)).toBe(true);
    }
  });

  it('sets only known settings, and every required one, in a form loadConfig accepts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-deploy-'));
    try {
      for (const role of ROLES) {
        const deployment = deploymentOf(role);
        const container = deployment.spec.template.spec.containers[0]!;
        const env = containerEnv(objects, container);
        for (const name of env.keys()) expect(SETTING_NAMES.has(name) || STANDARD_ENV.has(name), `${role}: ${name} is not a setting`).toBe(true);
        for (const name of REQUIRED_ENV) expect(env.get(name), `${role}: ${name} unset`).toBeTruthy();

        // The experiments file is a key of a ConfigMap mounted where EDDY_EXPERIMENTS_FILE points.
        const experimentsPath = env.get('EDDY_EXPERIMENTS_FILE')!;
        const mount = container.volumeMounts?.find((m) => experimentsPath.startsWith(`${m.mountPath}/`));
        expect(mount, `${role}: nothing mounted at ${experimentsPath}`).toBeDefined();
        const volume = deployment.spec.template.spec.volumes?.find((v) => v.name === mount!.name);
        const experiments = named(objects, 'ConfigMap', volume!.configMap!.name).data as Record<string, string>;
        const key = experimentsPath.slice(mount!.mountPath.length + 1);
        expect(Object.keys(experiments)).toContain(key);

        const localExperiments = join(dir, key);
        writeFileSync(localExperiments, experiments[key]!);
        const config = loadConfig({ ...Object.fromEntries(env), EDDY_EXPERIMENTS_FILE: localExperiments });
        expect(config.kafka.brokers.length).toBeGreaterThan(0);
        expect(config.redis).toBeDefined();
        expect(config.simulate).toBe(false);
        expect(config.dataDir).toBeUndefined();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('probes liveness on /healthz and readiness on /readyz through a declared port', () => {
    for (const deployment of deployments) {
      const container = deployment.spec.template.spec.containers[0]!;
      const portNames = (container.ports ?? []).map((p) => p.name);
      expect(container.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
      for (const probe of [container.livenessProbe!, container.readinessProbe!]) expect(portNames).toContain(probe.httpGet!.port);
    }
  });

  it('requests and limits CPU and memory, requests within limits', () => {
    for (const deployment of deployments) {
      const { resources } = deployment.spec.template.spec.containers[0]!;
      for (const resource of ['cpu', 'memory']) {
        const request = quantity(resources?.requests?.[resource] ?? 'missing');
        const limit = quantity(resources?.limits?.[resource] ?? 'missing');
        expect(request, `${deployment.metadata.name} ${resource}`).toBeLessThanOrEqual(limit);
      }
    }
  });

  it('runs as a non-root user without privilege escalation', () => {
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec;
      expect(pod.securityContext?.runAsNonRoot).toBe(true);
      expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
      for (const container of pod.containers) {
        expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);
        expect(container.securityContext?.readOnlyRootFilesystem).toBe(true);
        expect(container.securityContext?.capabilities?.drop).toContain('ALL');
      }
    }
  });

  it('spreads pods over zones and nodes, and bounds voluntary disruption', () => {
    const budgets = ofKind<K8sObject & { spec: { selector: { matchLabels: Record<string, string> } } }>(objects, 'PodDisruptionBudget');
    for (const deployment of deployments) {
      const labels = deployment.spec.template.metadata.labels;
      const spread = deployment.spec.template.spec.topologySpreadConstraints ?? [];
      expect(spread.map((c) => c.topologyKey).sort()).toEqual(['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
      for (const constraint of spread) expect(matches(constraint.labelSelector!.matchLabels!, labels)).toBe(true);
      expect(budgets.filter((b) => matches(b.spec.selector.matchLabels, labels)), deployment.metadata.name).toHaveLength(1);
    }
  });

  it('exposes every role on a Service that the ServiceMonitor scrapes', () => {
    const services = ofKind<K8sObject & { spec: { selector: Record<string, string>; ports: { name: string; port: number }[] } }>(objects, 'Service');
    const [monitor] = ofKind<K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] } }>(
      objects,
      'ServiceMonitor',
    );
    expect(monitor).toBeDefined();
    expect(monitor!.spec.endpoints.map((e) => e.path)).toEqual(['/metrics']);
    for (const deployment of deployments) {
      const service = services.find((s) => matches(s.spec.selector, deployment.spec.template.metadata.labels));
      expect(service, deployment.metadata.name).toBeDefined();
      expect(matches(monitor!.spec.selector.matchLabels, service!.metadata.labels)).toBe(true);
      expect(service!.spec.ports.map((p) => p.name)).toContain(monitor!.spec.endpoints[0]!.port);
    }
    expect(named<K8sObject & { spec: { ports: { port: number }[] } }>(objects, 'Service', 'eddy-serve').spec.ports[0]!.port).toBe(8080);
  });

  it('declares every topic for Strimzi, compacting the state topics', () => {
    const topics = ofKind<K8sObject & { spec: { topicName: string; partitions: number; replicas: number; config: Record<string, string> } }>(objects, 'KafkaTopic');
    const expected = SETTINGS.filter((s) => s.name.startsWith('KAFKA_TOPIC_')).map((s) => s.default!);
    expect(topics.map((t) => t.spec.topicName).sort()).toEqual([...expected].sort());
    for (const topic of topics) {
      expect(topic.metadata.labels?.['strimzi.io/cluster']).toBeTruthy();
      expect(Number.isInteger(topic.spec.partitions) && topic.spec.partitions >= 1).toBe(true);
      expect(Number.isInteger(topic.spec.replicas) && topic.spec.replicas >= 1).toBe(true);
      expect(Number(topic.spec.config['min.insync.replicas'])).toBeLessThanOrEqual(topic.spec.replicas);
      if (COMPACTED_TOPICS.includes(topic.spec.topicName)) {
        expect(topic.spec.config['cleanup.policy']).toBe('compact');
      } else {
        expect(topic.spec.config['cleanup.policy']).toBe('delete');
        expect(Number(topic.spec.config['retention.ms'])).toBeGreaterThan(0);
      }
    }
  });

  it('scales stream roles on consumer lag, never past the partitions of their input topics', () => {
    const topics = new Map(
      ofKind<K8sObject & { spec: { topicName: string; partitions: number } }>(objects, 'KafkaTopic').map((t) => [t.spec.topicName, t.spec.partitions]),
    );
    const scaled = ofKind<
      K8sObject & {
        spec: { scaleTargetRef: { name: string }; minReplicaCount: number; maxReplicaCount: number; triggers: { type: string; metadata: Record<string, string> }[] };
      }
    >(objects, 'ScaledObject');
    expect(scaled.map((s) => s.spec.scaleTargetRef.name).sort()).toEqual(STREAM_ROLES.map((r) => `eddy-${r}`).sort());
    const config = named(objects, 'ConfigMap', 'eddy-config').data as Record<string, string>;
    for (const object of scaled) {
      const role = object.spec.scaleTargetRef.name.replace(/^eddy-/, '');
      expect(object.spec.minReplicaCount).toBeLessThanOrEqual(object.spec.maxReplicaCount);
      expect(object.spec.triggers.length).toBeGreaterThan(0);
      for (const trigger of object.spec.triggers) {
        expect(trigger.type).toBe('kafka');
        expect(trigger.metadata.consumerGroup).toBe(`eddy-${role}`);
        expect(trigger.metadata.bootstrapServers).toBe(config.KAFKA_BROKERS);
        expect(Number(trigger.metadata.lagThreshold)).toBeGreaterThan(0);
        expect(topics.has(trigger.metadata.topic!), `${role}: unknown topic ${trigger.metadata.topic}`).toBe(true);
      }
      // A group's members share each topic's partitions: a replica beyond the widest input topic would idle.
      const widest = Math.max(...object.spec.triggers.map((t) => topics.get(t.metadata.topic!)!));
      expect(object.spec.maxReplicaCount, `${role} outgrows its input topics`).toBeLessThanOrEqual(widest);
    }
    expect(named(objects, 'ScaledObject', 'eddy-samples').spec).toMatchObject({ triggers: [{ metadata: { topic: 'events' } }] });
    expect(named(objects, 'ScaledObject', 'eddy-trainer').spec).toMatchObject({ maxReplicaCount: 1, triggers: [{ metadata: { topic: 'samples' } }] });
    const hpa = named<K8sObject & { spec: { scaleTargetRef: { name: string }; metrics: { resource: { name: string } }[] } }>(objects, 'HorizontalPodAutoscaler', 'eddy-serve');
    expect(hpa.spec.scaleTargetRef.name).toBe('eddy-serve');
    expect(hpa.spec.metrics.map((m) => m.resource.name)).toEqual(['cpu']);
  });

  it('leaves every replica count to exactly one autoscaler', () => {
    const targets = [...ofKind(objects, 'ScaledObject'), ...ofKind(objects, 'HorizontalPodAutoscaler')].map(
      (o) => (o.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name,
    );
    expect(targets.sort()).toEqual(deployments.map((d) => d.metadata.name).sort());
    for (const deployment of deployments) expect(deployment.spec.replicas, deployment.metadata.name).toBeUndefined();
  });
});

describe('overlays', () => {
  it('dev runs one small replica of everything in its own namespace', () => {
    const objects = rendered.dev;
    for (const object of objects) expect(object.metadata.namespace).toBe('eddy-dev');
    for (const deployment of ofKind<DeploymentLike>(objects, 'Deployment')) {
      const container = deployment.spec.template.spec.containers[0]!;
      expect(quantity(container.resources!.requests!.memory!)).toBeLessThanOrEqual(256 * 2 ** 20);
      // The patch merged into the container rather than replacing it.
      expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
      expect(containerEnv(objects, container).get('NODE_ENV')).toBe('development');
    }
    for (const scaled of ofKind<K8sObject & { spec: { maxReplicaCount: number } }>(objects, 'ScaledObject')) expect(scaled.spec.maxReplicaCount).toBe(1);
    expect(named(objects, 'HorizontalPodAutoscaler', 'eddy-serve').spec).toMatchObject({ minReplicas: 1, maxReplicas: 1 });
    for (const topic of ofKind<K8sObject & { spec: { replicas: number } }>(objects, 'KafkaTopic')) expect(topic.spec.replicas).toBe(1);
  });

  it('prod pins the image and gives the hot topic room for its scale-out', () => {
    const objects = rendered.prod;
    for (const object of objects) expect(object.metadata.namespace).toBe('eddy');
    const events = named<K8sObject & { spec: { partitions: number } }>(objects, 'KafkaTopic', 'events');
    expect(events.spec.partitions).toBe(24);
    expect(named(objects, 'ScaledObject', 'eddy-features').spec).toMatchObject({ maxReplicaCount: 24 });
    for (const deployment of ofKind<DeploymentLike>(objects, 'Deployment')) {
      expect(deployment.spec.template.spec.containers[0]!.image).toMatch(/:[0-9]+\.[0-9]+\.[0-9]+$/);
    }
    expect(named(objects, 'HorizontalPodAutoscaler', 'eddy-serve').spec).toMatchObject({ minReplicas: 3, maxReplicas: 30 });
    const serve = named<DeploymentLike>(objects, 'Deployment', 'eddy-serve').spec.template.spec.containers[0]!;
    expect(serve.resources?.requests?.cpu).toBe('1');
    expect(serve.livenessProbe?.httpGet?.path).toBe('/healthz');
  });
});

describe('Grafana dashboard', () => {
  it('queries only metrics Eddy defines', () => {
    const configMap = named(rendered.base, 'ConfigMap', 'eddy-grafana-dashboard');
    expect(configMap.metadata.labels?.grafana_dashboard).toBe('1');
    const dashboard = JSON.parse((configMap.data as Record<string, string>)['eddy-dashboard.json']!) as { panels: { targets: { expr: string }[] }[] };
    const registry = new Registry();
    createMetrics(registry);
    const defined = new Set(registry.getMetricsAsArray().map((m) => m.name));
    const used = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/\beddy_[a-z_]+/g) ?? []));
    expect(used.length).toBeGreaterThan(10);
    for (const name of used) expect(defined.has(name.replace(/_bucket$/, '')), name).toBe(true);
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const stages = instructions.reduce<string[][]>((all, line) => (line.startsWith('FROM ') ? [...all, [line]] : (all.at(-1)?.push(line), all)), []);

  it('builds in one stage and runs non-root from a slim Node 20 image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const runtime = stages.at(-1)!;
    expect(runtime[0]).toMatch(/^FROM node:20-bookworm-slim\b/);
    expect(runtime.filter((l) => l.startsWith('USER ')).at(-1)).toBe('USER node');
    expect(runtime).toContain('ENTRYPOINT ["node", "bin/eddy.js"]');
    expect(runtime).toContain('CMD ["all"]');
    const build = stages.slice(0, -1).flat().join('\n');
    expect(build).toMatch(/CKJS_LINKING=dynamic/);
    expect(build).toMatch(/npm run build/);
    expect(build).toMatch(/npm prune --omit=dev/);
  });
});

describe('the checks themselves', () => {
  it('reject a malformed Deployment, an unsupported kustomization field and a patch that matches nothing', () => {
    const deployment = structuredClone(rendered.base.find((o) => o.kind === 'Deployment')!) as DeploymentLike;
    deployment.spec.template.spec.containers[0]!.ports = [{ name: 'http', containerPort: '8080' as unknown as number }];
    expect(() => new Deployment(deployment as never).validate()).toThrow(/containerPort/);

    const dir = mkdtempSync(join(tmpdir(), 'eddy-kustomize-'));
    try {
      writeFileSync(join(dir, 'kustomization.yaml'), 'resources: []\nnamePrefix: x-\n');
      expect(() => kustomizeBuild(dir)).toThrow(/unsupported fields namePrefix/);
      writeFileSync(join(dir, 'kustomization.yaml'), `resources: [${relative(dir, trees.base)}]\npatches: [{path: p.yaml}]\n`);
      writeFileSync(join(dir, 'p.yaml'), 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: eddy-nothing}\nspec: {replicas: 2}\n');
      expect(() => kustomizeBuild(dir)).toThrow(/matches no resource/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
