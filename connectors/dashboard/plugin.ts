/**
 * The live dashboard: a page at `/`, its script and styles, uPlot from node_modules (no CDN), a JSON snapshot at
 * `/dashboard/snapshot`, and a Server-Sent Events stream at `/dashboard/events` pushing one snapshot per tick to
 * every connected browser. The source is asked once per tick however many browsers watch, and not at all when none do.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { DashboardSnapshot, DashboardSource } from './snapshot.js';

export interface DashboardOptions {
  /** Time between two snapshots pushed to browsers. Default 1,000 ms. */
  readonly intervalMs?: number;
}

/**
 * The page's own files live next to this module's source; from `dist/` they are found in the source tree, which the
 * package and the image ship.
 */
function staticDirectory(): string {
  const candidates = [new URL('./static/', import.meta.url), new URL('../../../connectors/dashboard/static/', import.meta.url)];
  const found = candidates.find((url) => existsSync(new URL('index.html', url)));
  if (!found) throw new Error(`dashboard: static files not found in ${candidates.map((u) => fileURLToPath(u)).join(' or ')}`);
  return fileURLToPath(found);
}

interface Asset {
  readonly body: Buffer;
  readonly contentType: string;
}

function loadAssets(): ReadonlyMap<string, Asset> {
  const dir = staticDirectory();
  const require = createRequire(import.meta.url);
  const read = (path: string, contentType: string): Asset => ({ body: readFileSync(path), contentType });
  return new Map([
    ['/', read(`${dir}index.html`, 'text/html; charset=utf-8')],
    ['/dashboard/dashboard.js', read(`${dir}dashboard.js`, 'text/javascript; charset=utf-8')],
    ['/dashboard/dashboard.css', read(`${dir}dashboard.css`, 'text/css; charset=utf-8')],
    ['/dashboard/uplot.min.js', read(require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8')],
    ['/dashboard/uplot.min.css', read(require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8')],
  ]);
}

/** Registers the dashboard's routes; pass it in `createHttpServer`'s `plugins`. */
export function dashboardPlugin(source: DashboardSource, options: DashboardOptions = {}): (app: FastifyInstance) => void {
  const intervalMs = options.intervalMs ?? 1000;
  const assets = loadAssets();

  return (app) => {
    for (const [url, asset] of assets) {
      app.get(url, async (_request, reply) => reply.header('content-type', asset.contentType).header('cache-control', 'no-cache').send(asset.body));
    }

    app.get('/dashboard/snapshot', async () => source.snapshot());

    const streams = new Set<ServerResponse>();
    let timer: NodeJS.Timeout | undefined;
    let ticking = false;

    const broadcast = (snapshot: DashboardSnapshot) => {
      const frame = `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`;
      for (const stream of streams) stream.write(frame);
    };
    const tick = async () => {
      // A slow source skips ticks rather than piling them up.
      if (ticking) return;
      ticking = true;
      try {
        broadcast(await source.snapshot());
      } catch (error) {
        app.log.error({ err: error }, 'dashboard snapshot failed');
      } finally {
        ticking = false;
      }
    };
    const stopIfIdle = () => {
      if (streams.size === 0 && timer) {
        clearInterval(timer);
        timer = undefined;
      }
    };

    app.get('/dashboard/events', (_request, reply) => {
      reply.hijack();
      const stream = reply.raw;
      stream.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        // Proxies such as nginx would otherwise buffer the stream.
        'x-accel-buffering': 'no',
      });
      stream.write(`retry: ${Math.max(1000, intervalMs)}\n\n`);
      streams.add(stream);
      // The response, not the request: a request's 'close' may come as soon as its (empty) body is read.
      stream.on('close', () => {
        streams.delete(stream);
        stopIfIdle();
      });
      if (!timer) timer = setInterval(() => void tick(), intervalMs);
      void tick();
    });

    // Open streams would hold `close()` forever: end them before the server waits for its connections.
    app.addHook('preClose', async () => {
      for (const stream of streams) stream.end();
      streams.clear();
      stopIfIdle();
    });
  };
}
