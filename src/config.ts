import path from "node:path";
import { z } from "zod";
import { AppError } from "./errors.ts";

/**
 * The whole configuration, read from the environment once. Variable names are a contract (DESIGN.md).
 * This is the only module that reads `process.env`; everything else receives a Config.
 */
const optionalString = z
  .string()
  .transform((value) => value.trim())
  .transform((value) => (value === "" ? undefined : value))
  .optional();

const url = (what: string) =>
  optionalString.refine((value) => value === undefined || URL.canParse(value), {
    message: `must be a full URL (${what})`,
  });

const EnvSchema = z
  .object({
    DATABASE_URL: optionalString.refine((value) => value === undefined || /^postgres(ql)?:\/\//.test(value), {
      message: "must start with postgres:// or postgresql:// (leave it unset to use the embedded database)",
    }),
    DATA_DIR: optionalString,
    BLOB_STORE: z.enum(["fs", "s3"], { message: "must be fs or s3" }).default("fs"),
    S3_BUCKET: optionalString,
    S3_ENDPOINT: url("e.g. https://s3.eu-west-1.amazonaws.com"),
    S3_REGION: optionalString,
    OPENAI_API_KEY: optionalString,
    OPENAI_BASE_URL: url("e.g. http://127.0.0.1:4010/v1"),
    IMAGE_MODEL: optionalString.default("gpt-image-2"),
    THINK_MODEL: optionalString.default("gpt-5.5"),
    SLACK_BOT_TOKEN: optionalString.refine((value) => value === undefined || value.startsWith("xoxb-"), {
      message: "must be a bot token starting with xoxb-",
    }),
    SLACK_SIGNING_SECRET: optionalString,
    SLACK_APP_TOKEN: optionalString.refine((value) => value === undefined || value.startsWith("xapp-"), {
      message: "must be an app-level token starting with xapp- (it turns on Socket Mode)",
    }),
    SLACK_API_URL: url("e.g. https://slack.com/api/"),
    DISCORD_TOKEN: optionalString,
    DISCORD_API_URL: url("e.g. https://discord.com/api"),
    PORT: z.coerce
      .number({ message: "must be a port number" })
      .int({ message: "must be a whole number" })
      .min(0, { message: "must be between 0 and 65535" })
      .max(65535, { message: "must be between 0 and 65535" })
      .default(3000),
    LOG_LEVEL: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
        message: "must be one of fatal, error, warn, info, debug, trace, silent",
      })
      .default("info"),
    WORKER_CONCURRENCY: z.coerce
      .number({ message: "must be a number" })
      .int({ message: "must be a whole number" })
      .min(1, { message: "must be at least 1" })
      .max(64, { message: "must be at most 64" })
      .default(4),
  })
  .superRefine((env, ctx) => {
    if (env.BLOB_STORE === "s3") {
      ctx.addIssue({
        code: "custom",
        path: ["BLOB_STORE"],
        message: "s3 is not available in this version yet; use fs (the default)",
      });
    }
    if (env.SLACK_BOT_TOKEN && !env.SLACK_APP_TOKEN && !env.SLACK_SIGNING_SECRET) {
      ctx.addIssue({
        code: "custom",
        path: ["SLACK_SIGNING_SECRET"],
        message: "is required with SLACK_BOT_TOKEN over HTTP (or set SLACK_APP_TOKEN for Socket Mode)",
      });
    }
    if ((env.SLACK_APP_TOKEN || env.SLACK_SIGNING_SECRET) && !env.SLACK_BOT_TOKEN) {
      ctx.addIssue({
        code: "custom",
        path: ["SLACK_BOT_TOKEN"],
        message: "is required when other SLACK_* variables are set",
      });
    }
  });

export interface Config {
  databaseUrl: string | undefined;
  dataDir: string;
  blobStore: "fs";
  openai: { apiKey: string | undefined; baseUrl: string | undefined; imageModel: string; thinkModel: string };
  slack: {
    botToken: string;
    signingSecret: string | undefined;
    appToken: string | undefined;
    apiUrl: string | undefined;
  } | null;
  discord: { token: string; apiUrl: string | undefined } | null;
  port: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  workerConcurrency: number;
}

export interface LoadConfigOptions {
  /** `npm start` needs a key to generate; `db:migrate` does not. */
  requireOpenAIKey?: boolean;
}

/** Parses the environment; throws one AppError("config_invalid") that names every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, options: LoadConfigOptions = {}): Config {
  const parsed = EnvSchema.safeParse(env);
  const problems: string[] = parsed.success
    ? []
    : parsed.error.issues.map((issue) => `  - ${issue.path.join(".") || "environment"} ${issue.message}`);
  if (options.requireOpenAIKey && !env.OPENAI_API_KEY?.trim()) {
    problems.push(
      "  - OPENAI_API_KEY is required to generate images: create one at https://platform.openai.com/api-keys " +
        "(or run `npm run fake:openai` and use the key and OPENAI_BASE_URL it prints)",
    );
  }
  if (!parsed.success || problems.length > 0) {
    const message = `threadcanvas cannot start; fix these environment variables:\n${problems.join("\n")}`;
    throw new AppError("config_invalid", message);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.DATA_DIR ?? "./.threadcanvas"),
    blobStore: "fs",
    openai: {
      apiKey: e.OPENAI_API_KEY,
      baseUrl: e.OPENAI_BASE_URL,
      imageModel: e.IMAGE_MODEL,
      thinkModel: e.THINK_MODEL,
    },
    slack: e.SLACK_BOT_TOKEN
      ? {
          botToken: e.SLACK_BOT_TOKEN,
          signingSecret: e.SLACK_SIGNING_SECRET,
          appToken: e.SLACK_APP_TOKEN,
          apiUrl: e.SLACK_API_URL,
        }
      : null,
    discord: e.DISCORD_TOKEN ? { token: e.DISCORD_TOKEN, apiUrl: e.DISCORD_API_URL } : null,
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    workerConcurrency: e.WORKER_CONCURRENCY,
  };
}
