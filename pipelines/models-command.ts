import { parseArgs } from 'node:util';

const USAGE = `usage: eddy models list|pin|unpin|rollback [options]
  eddy models list                               versions, lineage, status and online metrics
  eddy models pin <model> <version>              serve this version and stop automatic changes
  eddy models unpin <model>                      let new versions and rollbacks through again
  eddy models rollback <model> [--to VERSION]    serve the parent (or VERSION) instead
options: --url URL (default http://localhost:$PORT or 8080, the trainer's or eddy all's HTTP), --token T (default $EDDY_AUTH_TOKEN), --json`;

/** `eddy models`: the model registry's admin commands, over the HTTP API of the process that owns the registry. */
export async function main(args: readonly string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...args],
    allowPositionals: true,
    options: {
      url: { type: 'string', default: `http://localhost:${process.env.PORT || 8080}` },
      token: { type: 'string', default: process.env.EDDY_AUTH_TOKEN ?? '' },
      to: { type: 'string' },
      reason: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  const [action, model, version] = positionals;
  if (values.help || !action) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${values.url}${path}`, {
      method,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(values.token ? { authorization: `Bearer ${values.token}` } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    }).catch((error: unknown) => {
      throw new Error(`cannot reach ${values.url}`, { cause: error });
    });
    const payload = (await response.json()) as { error?: string };
    if (!response.ok) throw new Error(`${response.status}: ${payload.error ?? 'request failed'}`);
    return payload;
  };
  const need = (value: string | undefined, what: string): string => {
    if (!value) throw new Error(`missing ${what}\n${USAGE}`);
    return value;
  };
  let result: unknown;
  switch (action) {
    case 'list': {
      const { versions } = (await call('GET', '/v1/models')) as { versions: { model: string; version: string; parent: string | null; status: string; pinned: boolean; metrics: Record<string, number> }[] };
      if (values.json) {
        console.log(JSON.stringify(versions));
        return 0;
      }
      for (const v of versions) {
        const metrics = Object.entries(v.metrics).map(([k, x]) => `${k}=${x.toFixed(4)}`).join(' ');
        console.log(`${v.model}\t${v.version}\t${v.status}${v.pinned ? ' (pinned)' : ''}\tparent=${v.parent ?? '-'}\t${metrics}`);
      }
      return 0;
    }
    case 'pin':
      result = await call('POST', `/v1/models/${encodeURIComponent(need(model, 'model'))}/pin`, { version: need(version, 'version') });
      break;
    case 'unpin':
      result = await call('POST', `/v1/models/${encodeURIComponent(need(model, 'model'))}/unpin`, {});
      break;
    case 'rollback':
      result = await call('POST', `/v1/models/${encodeURIComponent(need(model, 'model'))}/rollback`, {
        ...(values.to ? { to: values.to } : {}),
        ...(values.reason ? { reason: values.reason } : {}),
      });
      break;
    default:
      console.error(`eddy models: unknown action '${action}'\n${USAGE}`);
      return 2;
  }
  console.log(JSON.stringify(result, null, values.json ? 0 : 2));
  return 0;
}
