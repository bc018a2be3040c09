import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { HealthChecks } from "../health.ts";
import type { Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";

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
  health: HealthChecks;
  metrics: Pick<Metrics, "text" | "contentType">;
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
      // Ready only when every check is up; otherwise 503 naming the ones that are down (never why: see the log).
      path: "/healthz",
      method: "GET",
      handler: (_req, res) => {
        deps.health.run().then(
          (report) =>
            report.ok
              ? send(res, 200, "application/json", JSON.stringify({ status: "ok", checks: report.checks }))
              : send(
                  res,
                  503,
                  "application/json",
                  JSON.stringify({ status: "unavailable", down: report.down, checks: report.checks }),
                ),
          (error: unknown) => {
            deps.logger.warn({ err: error }, "health checks failed");
            send(res, 503, "application/json", JSON.stringify({ status: "unavailable" }));
          },
        );
      },
    },
    {
      // Counters kept in memory as work happens: a scrape sums nothing in the database.
      path: "/metrics",
      method: "GET",
      handler: (req, res) => {
        if (deps.metricsToken !== undefined && !bears(req, deps.metricsToken)) {
          res.writeHead(401, { "content-type": "text/plain", "www-authenticate": 'Bearer realm="metrics"' });
          res.end("a bearer token is required\n");
          return;
        }
        deps.metrics.text().then(
          (text) => send(res, 200, deps.metrics.contentType, text),
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
