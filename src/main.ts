import { mkdirSync } from "node:fs";
import path from "node:path";
import pino from "pino";
import { ConsoleAdapter } from "../adapters/console/console-adapter.ts";
import { createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { AppError } from "./errors.ts";
import { startHttpServer } from "./http-server.ts";
import { createLogger } from "./logger.ts";

/**
 * `npm start`: every adapter whose token is set, and the workers. With no platform token, the console adapter
 * runs in this terminal; its logs go to a file so they do not interleave with the conversation.
 */
async function main(): Promise<void> {
  const config = loadConfig(process.env, { requireOpenAIKey: true });
  if (config.slack || config.discord) {
    const which = [config.slack && "Slack", config.discord && "Discord"].filter(Boolean).join(" and ");
    throw new AppError(
      "config_invalid",
      `${which} token(s) set, but this version only has the console adapter`,
      {
        userMessage:
          `threadcanvas cannot start: the ${which} adapter is not part of this version yet. ` +
          "Unset SLACK_BOT_TOKEN / DISCORD_TOKEN to use the console.",
      },
    );
  }

  const logDir = path.join(config.dataDir, "logs");
  mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, "threadcanvas.log");
  const logger = createLogger(config.logLevel, pino.destination({ dest: logFile, mkdir: true, sync: false }));
  const interactive = process.stdin.isTTY === true;
  if (interactive) process.stdout.write(`Starting (first start creates the database; logs: ${logFile})…\n`);

  const app = await createApp(config, logger);
  const http = await startHttpServer(config.port, app.routes, logger).catch((error: unknown) => {
    const inUse = (error as NodeJS.ErrnoException).code === "EADDRINUSE";
    throw new AppError("config_invalid", String(error), {
      userMessage: inUse
        ? `threadcanvas cannot start: port ${config.port} is in use. Set PORT to a free port (0 picks one).`
        : `threadcanvas cannot start its HTTP server: ${String(error)}`,
    });
  });
  const adapter = new ConsoleAdapter({
    engine: app.engine,
    input: process.stdin,
    output: process.stdout,
    outDir: path.join(config.dataDir, "out"),
    userId: config.consoleUser,
    interactive,
  });
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await http.close().catch(() => {});
    await app.stop().catch((error: unknown) => logger.error({ err: error }, "shutdown failed"));
    logger.flush();
    process.exit(code);
  };
  process.once("SIGINT", () => void stop(130));
  process.once("SIGTERM", () => void stop(143));

  await app.startWorkers();
  await adapter.run();
  await stop(0);
}

main().catch((error: unknown) => {
  const message =
    error instanceof AppError ? error.userMessage : error instanceof Error ? error.stack : String(error);
  process.stderr.write(`${message}\n`);
  process.exit(1);
});
