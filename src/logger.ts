import pino, { type DestinationStream, type Logger } from "pino";

export type { Logger };

/**
 * Secrets and image bytes never reach the log: these paths are censored wherever they appear, and callers log
 * sizes and hashes, never buffers.
 */
const REDACT = [
  "apiKey",
  "token",
  "botToken",
  "appToken",
  "signingSecret",
  "authorization",
  "headers.authorization",
  "*.apiKey",
  "*.token",
  "*.botToken",
  "*.appToken",
  "*.signingSecret",
  "*.authorization",
  "b64_json",
  "*.b64_json",
  "bytes",
  "*.bytes",
];

/**
 * Tokens that live in URLs: Discord's interaction and webhook tokens (`/webhooks/<app>/<token>`,
 * `/interactions/<id>/<token>`), and Slack's `response_url` (`/commands/…` and `/actions/…` paths).
 */
const URL_SECRETS =
  /(\/(?:webhooks|interactions)\/\d+\/)[\w.-]+|(hooks\.slack\.com\/(?:commands|actions)\/)[\w/.-]+/g;

export function redactUrlSecrets(text: string): string {
  return text.replace(URL_SECRETS, (_match, discord: string | undefined, slack: string | undefined) =>
    discord ? `${discord}[redacted]` : `${slack}[redacted]`,
  );
}

/**
 * Errors as pino serializes them, without what some clients attach: discord.js's `DiscordAPIError` carries the
 * request it failed (`requestBody`, with file bytes and JSON) and its URL (with an interaction token in it).
 */
function errorSerializer(error: Error): Record<string, unknown> {
  const serialized: Record<string, unknown> = { ...pino.stdSerializers.err(error) };
  delete serialized.requestBody;
  for (const key of ["message", "stack", "url"]) {
    const value = serialized[key];
    if (typeof value === "string") serialized[key] = redactUrlSecrets(value);
  }
  return serialized;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT, censor: "[redacted]" },
      base: { service: "threadcanvas" },
      serializers: { err: errorSerializer },
    },
    destination,
  );
}
