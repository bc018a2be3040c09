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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT, censor: "[redacted]" },
      base: { service: "threadcanvas" },
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}
