import { mkdirSync } from "node:fs";
import path from "node:path";
import pino from "pino";
import { type App, createApp } from "./app.ts";
import { type Config, loadConfig } from "./config.ts";
import type { Platform } from "./domain.ts";
import { AppError } from "./errors.ts";
import { startHttpServer } from "./http/http-server.ts";
import { createLogger, type Logger } from "./logger.ts";

/**
 * `npm start`: every adapter whose token is set, the HTTP server and the workers. With no platform token, the
 * console adapter runs in this terminal; its logs go to a file so they do not interleave with the conversation.
 * An adapter's module (and its platform's SDK) is loaded only when that adapter runs.
 */
async function main(): Promise<void> {
  const config = loadConfig(process.env, { requireOpenAIKey: true });
  if (config.slack || config.discord) await runPlatforms(config);
  else await runConsole(config);
}

interface PlatformAdapter {
  /** `receive: false`: deliver only (ROLE=worker). */
  start(options: { receive: boolean }): Promise<unknown>;
  stop(): Promise<void>;
}

/**
 * Every chat platform whose token is set, one engine behind them. `ROLE` splits the work between processes:
 * `ingress` holds the platform connections and acknowledges (recording each request and posting its status),
 * `worker` runs turns and delivers through the platforms' REST APIs (no Slack receiver, no Discord gateway
 * session), `all` does both.
 */
async function runPlatforms(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  keepRunningOnUnhandledRejections(logger);
  const app = await createApp(config, logger);
  const { access } = app;
  const receive = config.role !== "worker";
  const work = config.role !== "ingress";
  const adapters: PlatformAdapter[] = [];
  const platforms: Platform[] = [];
  // What every adapter is given alike.
  const common = {
    engine: app.engine,
    inbox: app.inbox,
    inboxHoldMs: config.inboxHoldMs,
    access,
    logger,
    metrics: app.metrics,
  };
  // Over HTTP, Bolt's server answers /slack/events and the operational routes; otherwise ours does.
  let boltServesHttp = false;
  if (config.slack) {
    const { SlackAdapter } = await import("../adapters/slack/adapter.ts");
    const slack = new SlackAdapter({
      ...common,
      botToken: config.slack.botToken,
      signingSecret: config.slack.signingSecret,
      appToken: config.slack.appToken,
      apiUrl: config.slack.apiUrl,
      port: config.port,
      routes: app.routes,
    });
    app.health.add("slack", () => slack.connected());
    adapters.push(slack);
    platforms.push("slack");
    boltServesHttp = receive && !config.slack.appToken;
  }
  if (config.discord) {
    const { DiscordAdapter } = await import("../adapters/discord/adapter.ts");
    const discord = new DiscordAdapter({
      ...common,
      token: config.discord.token,
      apiUrl: config.discord.apiUrl,
    });
    app.health.add("discord", () => discord.connected());
    adapters.push(discord);
    platforms.push("discord");
  }
  const http = boltServesHttp ? null : await listen(config, app, logger);
  if (work) await app.startWorkers(platforms);
  for (const adapter of adapters) await adapter.start({ receive });
  logger.info({ role: config.role, platforms }, "threadcanvas running");
  stopOnSignals(logger, async () => {
    // Requests that arrive meanwhile are still recorded and acknowledged; they run after the restart.
    logger.info({ graceMs: config.shutdownGraceMs }, "stopping: finishing the turns in progress");
    await app.stopWorkers(config.shutdownGraceMs);
    for (const adapter of adapters) await adapter.stop();
    await http?.close();
    await app.stop();
    logger.info("stopped");
  });
}

async function runConsole(config: Config): Promise<void> {
  const logDir = path.join(config.dataDir, "logs");
  mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, "threadcanvas.log");
  const logger = createLogger(config.logLevel, pino.destination({ dest: logFile, mkdir: true, sync: false }));
  keepRunningOnUnhandledRejections(logger);
  const interactive = process.stdin.isTTY === true;
  if (interactive) process.stdout.write(`Starting (first start creates the database; logs: ${logFile})…\n`);

  const app = await createApp(config, logger);
  const http = await listen(config, app, logger);
  const { ConsoleAdapter } = await import("../adapters/console/console-adapter.ts");
  const adapter = new ConsoleAdapter({
    engine: app.engine,
    input: process.stdin,
    output: process.stdout,
    outDir: path.join(config.dataDir, "out"),
    userId: config.consoleUser,
    interactive,
  });
  const stop = stopOnSignals(logger, async () => {
    await app.stopWorkers(config.shutdownGraceMs);
    await http.close();
    await app.stop();
  });
  await app.startWorkers(["console"]);
  await adapter.run();
  await stop(0);
}

async function listen(config: Config, app: App, logger: Logger) {
  return startHttpServer(config.port, app.routes, logger).catch((error: unknown) => {
    const inUse = (error as NodeJS.ErrnoException).code === "EADDRINUSE";
    throw new AppError("config_invalid", String(error), {
      userMessage: inUse
        ? `threadcanvas cannot start: port ${config.port} is in use. Set PORT to a free port (0 picks one).`
        : `threadcanvas cannot start its HTTP server: ${String(error)}`,
    });
  });
}

/**
 * Stops once on SIGTERM or SIGINT (or when the returned function is called): a planned stop, so it exits 0
 * once `shutdown` is done. A second signal exits at once (the turns still running are handed back by the
 * queue's heartbeat, as after a crash).
 */
function stopOnSignals(logger: Logger, shutdown: () => Promise<void>): (code: number) => Promise<void> {
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const failed = await shutdown().then(
      () => false,
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        return true;
      },
    );
    logger.flush();
    process.exit(failed ? 1 : code);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (!stopping) return void stop(0);
      logger.warn({ signal }, "second signal: exiting now");
      logger.flush();
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
  return stop;
}

/**
 * A rejected promise nobody awaited is a bug, but not one worth a crash: everything accepted is already in the
 * database, so the process logs it and goes on.
 */
function keepRunningOnUnhandledRejections(logger: Logger): void {
  process.on("unhandledRejection", (reason) => {
    logger.error({ err: reason }, "unhandled promise rejection (kept running)");
  });
}

main().catch((error: unknown) => {
  const message =
    error instanceof AppError ? error.userMessage : error instanceof Error ? error.stack : String(error);
  process.stderr.write(`${message}\n`);
  process.exit(1);
});
