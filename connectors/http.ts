import { randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  LIMITS,
  recommendationRequestSchema,
  type RecommendationRequest,
  type RecommendationResponse,
  type RecommendedItem,
} from '../schema/events.js';

/** What one `POST /v1/events` did: how many were accepted, and each rejected event with its reason. */
export interface IngestResult {
  readonly accepted: number;
  readonly rejected: readonly { readonly index: number; readonly field: string; readonly error: string }[];
}

export interface Readiness {
  readonly ready: boolean;
  /** Named checks, each healthy or not, with whatever detail helps an operator. */
  readonly checks: Readonly<Record<string, { readonly ok: boolean; readonly [detail: string]: unknown }>>;
}

/** What the HTTP layer serves; the serving pipeline implements it. */
export interface EddyService {
  ingest(events: readonly unknown[]): Promise<IngestResult>;
  recommend(request: RecommendationRequest): Promise<RecommendationResponse>;
  /** Neighbours of an item, or undefined when the item is unknown. */
  similar(itemId: string, count: number): Promise<readonly RecommendedItem[] | undefined>;
  experiment(id: string): unknown;
  readiness(): Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

/** One model version as the admin API shows it. */
export interface ModelVersionSummary {
  readonly model: string;
  readonly version: string;
  readonly parent: string | null;
  readonly status: string;
  readonly pinned: boolean;
  readonly createdAt: number;
  readonly samplesSeen: number;
  readonly metrics: Readonly<Record<string, number>>;
  readonly rollbackReason?: string;
}

/**
 * The model registry's admin operations, served by the role that owns the registry (the trainer). Async, since the
 * trainer may run on another thread than the HTTP server.
 */
export interface ModelAdmin {
  list(): Promise<readonly ModelVersionSummary[]>;
  pin(model: string, version: string): Promise<ModelVersionSummary>;
  unpin(model: string): Promise<ModelVersionSummary | undefined>;
  rollback(model: string, to: string | undefined, reason: string): Promise<ModelVersionSummary>;
}

export interface HttpOptions {
  /** Largest request body. Default 1 MiB. */
  readonly bodyLimitBytes?: number;
  /** Most events in one `POST /v1/events`. Default 1,000. */
  readonly maxEventsPerRequest?: number;
  /** When set, write and admin endpoints need `Authorization: Bearer <token>`. */
  readonly authToken?: string;
  /** Serves `/v1/models` (list, pin, unpin, rollback) when given. */
  readonly modelAdmin?: ModelAdmin;
  /** Extra routes (the dashboard), registered after the API. */
  readonly plugins?: readonly ((app: FastifyInstance) => void | Promise<void>)[];
  readonly logger?: boolean | object;
}

/** The body of `POST /v1/recommend`: a request whose id and count may be left to the server. */
const recommendBodySchema = recommendationRequestSchema.extend({
  requestId: recommendationRequestSchema.shape.requestId.optional(),
  count: recommendationRequestSchema.shape.count.optional(),
});

const DEFAULT_COUNT = 10;

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

function firstIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0]!;
  return { field: issue.path.map(String).join('.'), message: issue.message };
}

function tokensMatch(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Eddy's HTTP API on fastify. Every error is JSON `{error, field?}` with a 4xx status for the client's mistakes; a
 * 500 says only "internal error" and the cause goes to the log, never a stack trace to the client.
 */
export async function createHttpServer(service: EddyService, options: HttpOptions = {}): Promise<FastifyInstance> {
  const maxEvents = options.maxEventsPerRequest ?? 1000;
  const app = Fastify({
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    logger: options.logger ?? false,
    // Prototype keys are left in place so validation can refuse them naming the field; validated output never
    // carries them (schema/events.ts copies maps into null-prototype objects).
    onProtoPoisoning: 'ignore',
    onConstructorPoisoning: 'ignore',
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && given.length > 0 && given.length <= LIMITS.idLength ? given : randomUUID();
    },
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; field?: string }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) {
      request.log.error({ err: error }, 'request failed');
      return reply.status(500).send({ error: 'internal error' });
    }
    const body: { error: string; field?: string } = { error: error.message };
    if (error.field !== undefined) body.field = error.field;
    else if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) body.field = '';
    return reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => reply.status(404).send({ error: `no route ${request.method} ${request.url}` }));

  const requireToken = async (request: FastifyRequest) => {
    if (!options.authToken) return;
    const header = request.headers.authorization ?? '';
    const token = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    if (!token || !tokensMatch(token, options.authToken)) {
      throw new HttpError(401, 'missing or invalid bearer token', 'authorization');
    }
  };

  app.post('/v1/events', { preHandler: requireToken }, async (request, reply: FastifyReply) => {
    const body = request.body;
    if (body === undefined || body === null || typeof body !== 'object') {
      throw new HttpError(400, 'expected one event object or an array of events', '');
    }
    const events = Array.isArray(body) ? body : [body];
    if (events.length === 0) throw new HttpError(400, 'expected at least one event', '');
    if (events.length > maxEvents) throw new HttpError(413, `at most ${maxEvents} events per request`, '');
    const result = await service.ingest(events);
    return reply.status(202).send(result);
  });

  app.post('/v1/recommend', async (request) => {
    const parsed = recommendBodySchema.safeParse(request.body ?? {});
    if (!parsed.success) {
      const { field, message } = firstIssue(parsed.error);
      throw new HttpError(400, message, field);
    }
    const { requestId, count, ...rest } = parsed.data;
    return service.recommend({ ...rest, requestId: requestId ?? request.id, count: count ?? DEFAULT_COUNT });
  });

  const similarParams = z.object({ itemId: z.string().min(1).max(LIMITS.idLength) });
  const similarQuery = z.object({ count: z.coerce.number().int().min(1).max(LIMITS.count).default(DEFAULT_COUNT) });
  app.get('/v1/items/:itemId/similar', async (request) => {
    const params = similarParams.safeParse(request.params);
    if (!params.success) throw new HttpError(400, firstIssue(params.error).message, 'itemId');
    const query = similarQuery.safeParse(request.query);
    if (!query.success) throw new HttpError(400, firstIssue(query.error).message, 'count');
    const items = await service.similar(params.data.itemId, query.data.count);
    if (!items) throw new HttpError(404, `unknown item ${params.data.itemId}`, 'itemId');
    return { itemId: params.data.itemId, items };
  });

  app.get('/v1/experiments/:id', { preHandler: requireToken }, async (request) => {
    const { id } = request.params as { id: string };
    const report = service.experiment(id);
    if (report === undefined) throw new HttpError(404, `unknown experiment ${id}`, 'id');
    return report;
  });

  const admin = options.modelAdmin;
  if (admin) {
    const versionBody = z.strictObject({ version: z.string().min(1).max(LIMITS.idLength) });
    const rollbackBody = z.strictObject({ to: z.string().min(1).max(LIMITS.idLength).optional(), reason: z.string().max(LIMITS.stringLength).optional() });
    const parse = <T>(schema: z.ZodType<T>, body: unknown): T => {
      const parsed = schema.safeParse(body ?? {});
      if (!parsed.success) {
        const { field, message } = firstIssue(parsed.error);
        throw new HttpError(400, message, field);
      }
      return parsed.data;
    };
    const registryCall = async <T>(call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (error) {
        throw new HttpError(404, error instanceof Error ? error.message : String(error), 'version');
      }
    };
    app.get('/v1/models', { preHandler: requireToken }, async () => ({ versions: await admin.list() }));
    app.post('/v1/models/:model/pin', { preHandler: requireToken }, async (request) => {
      const { version } = parse(versionBody, request.body);
      return registryCall(() => admin.pin((request.params as { model: string }).model, version));
    });
    app.post('/v1/models/:model/unpin', { preHandler: requireToken }, async (request) => ({
      serving: (await registryCall(() => admin.unpin((request.params as { model: string }).model))) ?? null,
    }));
    app.post('/v1/models/:model/rollback', { preHandler: requireToken }, async (request) => {
      const { to, reason } = parse(rollbackBody, request.body);
      return registryCall(() => admin.rollback((request.params as { model: string }).model, to, reason ?? 'rolled back by an operator'));
    });
  }

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/readyz', async (_request, reply) => {
    const readiness = await service.readiness();
    return reply.status(readiness.ready ? 200 : 503).send(readiness);
  });

  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await service.metrics();
    return reply.header('content-type', contentType).send(body);
  });

  for (const plugin of options.plugins ?? []) await plugin(app);
  return app;
}
