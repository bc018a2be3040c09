import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../logger.ts";
import type { ConversationStore } from "../ports.ts";

/**
 * Operational endpoints. The same routes serve from Bolt's HTTP receiver (as `customRoutes`, beside
 * `POST /slack/events`) or, when Slack is not on HTTP, from the small server below.
 */
export interface HttpRoute {
  path: string;
  method: "GET";
  handler: (req: IncomingMessage, res: ServerResponse) => void;
}

export function operationalRoutes(deps: {
  store: ConversationStore;
  checkDatabase: () => Promise<unknown>;
  logger: Logger;
  /** `METRICS_TOKEN`: when set, `/metrics` answers only requests that bear it (`Authorization: Bearer …`). */
  metricsToken?: string | undefined;
}): HttpRoute[] {
  const send = (res: ServerResponse, status: number, type: string, body: string) => {
    res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
    res.end(body);
  };
  return [
    {
      path: "/healthz",
      method: "GET",
      handler: (_req, res) => {
        deps.checkDatabase().then(
          () => send(res, 200, "application/json", JSON.stringify({ status: "ok" })),
          (error: unknown) => {
            deps.logger.warn({ err: error }, "health check failed");
            send(res, 503, "application/json", JSON.stringify({ status: "unavailable", reason: "database" }));
          },
        );
      },
    },
    {
      path: "/metrics",
      method: "GET",
      handler: (req, res) => {
        if (deps.metricsToken !== undefined && !bears(req, deps.metricsToken)) {
          res.writeHead(401, { "content-type": "text/plain", "www-authenticate": 'Bearer realm="metrics"' });
          res.end("a bearer token is required\n");
          return;
        }
        deps.store.stats().then(
          (stats) => {
            const lines = [
              "# HELP threadcanvas_turns Turns by status.",
              "# TYPE threadcanvas_turns gauge",
              ...Object.entries(stats.turnsByStatus).map(
                ([status, count]) => `threadcanvas_turns{status="${status}"} ${count}`,
              ),
              "# HELP threadcanvas_images Images stored.",
              "# TYPE threadcanvas_images gauge",
              `threadcanvas_images ${stats.images}`,
              "# HELP threadcanvas_cost_usd_total Estimated provider spend in US dollars.",
              "# TYPE threadcanvas_cost_usd_total counter",
              `threadcanvas_cost_usd_total ${stats.costUsd}`,
              "# HELP threadcanvas_deliveries_late Finished turns a platform could not take yet; retried until they go out.",
              "# TYPE threadcanvas_deliveries_late gauge",
              `threadcanvas_deliveries_late ${stats.lateDeliveries}`,
              "",
            ];
            send(res, 200, "text/plain; version=0.0.4", lines.join("\n"));
          },
          (error: unknown) => {
            deps.logger.warn({ err: error }, "metrics failed");
            send(res, 503, "text/plain", "metrics unavailable\n");
          },
        );
      },
    },
  ];
}

/** Whether the request carries `Authorization: Bearer <token>`, compared in constant time. */
function bears(req: IncomingMessage, token: string): boolean {
  const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
  const expected = createHash("sha256").update(token).digest();
  return timingSafeEqual(createHash("sha256").update(given).digest(), expected);
}

/** A plain HTTP server for the routes; everything else is 404. Resolves once listening. */
export async function startHttpServer(
  port: number,
  routes: readonly HttpRoute[],
  logger: Logger,
): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const route = routes.find((r) => r.path === path && r.method === req.method);
    if (route) route.handler(req, res);
    else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, () => resolve());
  });
  const actualPort = (server.address() as AddressInfo).port;
  logger.info({ port: actualPort }, "http server listening");
  return {
    port: actualPort,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
