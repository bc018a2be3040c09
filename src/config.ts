import path from "node:path";
import { z } from "zod";
import type { AccessConfig } from "./access.ts";
import { AppError } from "./errors.ts";
import type { BudgetCap } from "./ports.ts";

/**
 * The whole configuration, read from the environment once. Variable names are a contract (DESIGN.md).
 * This is the only module that reads `process.env`; everything else receives a Config.
 */

/**
 * Environment values arrive as strings. Surrounding spaces are typos, and a blank value (`PORT=` in a .env file,
 * an empty CI secret) means "unset": it falls back to the default instead of failing or, worse, becoming 0.
 */
function blankAsUnset(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const trimmed = value.trim();
  return trimmed === "" ? undefined : trimmed;
}

const optionalString = z.preprocess(blankAsUnset, z.string().optional());

/** An http(s) URL. `URL.canParse` alone accepts `localhost:4010` (scheme "localhost:"), a common slip. */
const httpUrl = (example: string) =>
  optionalString.refine(
    (value) => value === undefined || /^https?:$/.test(URL.parse(value)?.protocol ?? ""),
    {
      message: `must be a full http:// or https:// URL (${example})`,
    },
  );

/** One of a few words, case-insensitive (`LOG_LEVEL=INFO` is fine). */
const oneOf = <const T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) =>
  z.preprocess(
    (value) => {
      const given = blankAsUnset(value);
      return typeof given === "string" ? given.toLowerCase() : given;
    },
    z.enum(values, { message: `must be one of ${values.join(", ")}` }).default(fallback),
  );

/** Digits only: `Number()` would also take `0x50`, `1e3` or `3000.5`, which no one means as a port. */
const wholeNumber = (min: number, max: number, fallback: number) => {
  const message = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(
    blankAsUnset,
    z
      .string()
      .regex(/^\d+$/, { message })
      .transform(Number)
      .pipe(z.number().min(min, { message }).max(max, { message }))
      .default(fallback),
  );
};

/** A comma list of ids, each of this form; unset (or blank) is null: no restriction. */
const idList = (pattern: RegExp, what: string) =>
  z.preprocess(
    blankAsUnset,
    z
      .string()
      .transform((value) =>
        value
          .split(",")
          .map((item) => item.trim())
          .filter(Boolean),
      )
      .superRefine((items, context) => {
        const bad = items.filter((item) => !pattern.test(item));
        if (bad.length > 0)
          context.addIssue({ code: "custom", message: `must list ${what}; not: ${bad.join(", ")}` });
      })
      .optional()
      .transform((items) => items ?? null),
  );

/** US dollars, like `5` or `12.50`; unset (or blank) is `fallback`. */
const dollars = (fallback: number | null, unset: string) => {
  const message = `must be an amount in US dollars, like 5 or 12.50 (${unset})`;
  return z.preprocess(
    blankAsUnset,
    z
      .string()
      .regex(/^\d+(\.\d{1,4})?$/, { message })
      .transform(Number)
      .pipe(z.number().max(1_000_000, { message }))
      .optional()
      .transform((value) => value ?? fallback),
  );
};

const EnvSchema = z.object({
  DATABASE_URL: optionalString.refine((value) => value === undefined || /^postgres(ql)?:\/\//.test(value), {
    message: "must start with postgres:// or postgresql:// (leave it unset to use the embedded database)",
  }),
  DATA_DIR: optionalString,
  BLOB_STORE: oneOf(["fs", "s3"], "fs"),
  S3_BUCKET: optionalString,
  S3_ENDPOINT: httpUrl("e.g. https://s3.eu-west-1.amazonaws.com"),
  S3_REGION: optionalString,
  S3_FORCE_PATH_STYLE: oneOf(["true", "false", "1", "0"], "false").transform(
    (v) => v === "true" || v === "1",
  ),
  OPENAI_API_KEY: optionalString,
  OPENAI_BASE_URL: httpUrl("e.g. http://127.0.0.1:4010/v1"),
  IMAGE_MODEL: optionalString.transform((value) => value ?? "gpt-image-2"),
  THINK_MODEL: optionalString.transform((value) => value ?? "gpt-5.5"),
  SLACK_BOT_TOKEN: optionalString.refine((value) => value === undefined || value.startsWith("xoxb-"), {
    message: "must be a bot token starting with xoxb-",
  }),
  SLACK_SIGNING_SECRET: optionalString,
  SLACK_APP_TOKEN: optionalString.refine((value) => value === undefined || value.startsWith("xapp-"), {
    message: "must be an app-level token starting with xapp- (it turns on Socket Mode)",
  }),
  SLACK_API_URL: httpUrl("e.g. https://slack.com/api/"),
  DISCORD_TOKEN: optionalString,
  DISCORD_API_URL: httpUrl("e.g. https://discord.com/api"),
  DISCORD_GUILD_ID: optionalString.refine((value) => value === undefined || /^\d{17,20}$/.test(value), {
    message: "must be a server id (17 to 20 digits; in Discord, right-click the server → Copy Server ID)",
  }),
  SLACK_ALLOWED_TEAMS: idList(/^[TE][A-Z0-9]{2,}$/, "Slack team ids (T…), comma-separated"),
  SLACK_ALLOWED_CHANNELS: idList(/^[CG][A-Z0-9]{2,}$/, "Slack channel ids (C… or G…), comma-separated"),
  DISCORD_ALLOWED_GUILDS: idList(/^\d{17,20}$/, "Discord server ids (17 to 20 digits), comma-separated"),
  DISCORD_ALLOWED_CHANNELS: idList(/^\d{17,20}$/, "Discord channel ids (17 to 20 digits), comma-separated"),
  ADMIN_USERS: idList(
    /^(slack:[UW][A-Z0-9]{2,}|discord:\d{17,20})$/,
    "users as slack:<user id> or discord:<user id>, comma-separated",
  ),
  METRICS_TOKEN: optionalString,
  ROLE: oneOf(["all", "ingress", "worker"], "all"),
  PORT: wholeNumber(0, 65535, 3000),
  LOG_LEVEL: oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"], "info"),
  WORKER_CONCURRENCY: wholeNumber(1, 64, 4),
  SHUTDOWN_GRACE_S: wholeNumber(0, 3600, 90),
  INBOX_HOLD_S: wholeNumber(1, 3600, 120),
  BUDGET_USER_DAILY_USD: dollars(null, "leave it unset for no cap"),
  BUDGET_CHANNEL_DAILY_USD: dollars(null, "leave it unset for no cap"),
  BUDGET_WORKSPACE_MONTHLY_USD: dollars(null, "leave it unset for no cap"),
  CONFIRM_ABOVE_USD: dollars(0.5, "0 asks before every image; the default is 0.50"),
  RATE_USER_PER_HOUR: z.preprocess(
    blankAsUnset,
    z
      .string()
      .regex(/^\d+$/, { message: "must be a whole number from 1 to 100000 (leave it unset for no limit)" })
      .transform(Number)
      .pipe(
        z
          .number()
          .min(1, { message: "must be a whole number from 1 to 100000 (leave it unset for no limit)" })
          .max(100_000, { message: "must be a whole number from 1 to 100000 (leave it unset for no limit)" }),
      )
      .optional(),
  ),
});

/**
 * Rules between variables. Checked on the raw environment, not in a zod refinement on the object: zod skips
 * object refinements when any field is invalid, so a bad PORT used to hide a missing SLACK_SIGNING_SECRET, and
 * the promise is one message naming every problem.
 */
function crossFieldProblems(env: NodeJS.ProcessEnv, options: LoadConfigOptions): string[] {
  const isSet = (name: string) => blankAsUnset(env[name]) !== undefined;
  const problems: string[] = [];
  if (isSet("SLACK_BOT_TOKEN") && !isSet("SLACK_APP_TOKEN") && !isSet("SLACK_SIGNING_SECRET")) {
    problems.push(
      "SLACK_SIGNING_SECRET is required with SLACK_BOT_TOKEN over HTTP (or set SLACK_APP_TOKEN for Socket Mode)",
    );
  }
  const slackExtras = ["SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"].filter(isSet);
  if (slackExtras.length > 0 && !isSet("SLACK_BOT_TOKEN")) {
    problems.push(`SLACK_BOT_TOKEN is required when ${slackExtras.join(" or ")} is set`);
  }
  if (String(blankAsUnset(env.BLOB_STORE) ?? "").toLowerCase() === "s3" && !isSet("S3_BUCKET")) {
    problems.push("S3_BUCKET is required with BLOB_STORE=s3 (the bucket every process keeps images in)");
  }
  const role = String(blankAsUnset(env.ROLE) ?? "all").toLowerCase();
  if ((role === "ingress" || role === "worker") && !isSet("SLACK_BOT_TOKEN") && !isSet("DISCORD_TOKEN")) {
    problems.push(`ROLE=${role} needs SLACK_BOT_TOKEN or DISCORD_TOKEN (the console runs only as ROLE=all)`);
  }
  if (isSet("DISCORD_GUILD_ID") && !isSet("DISCORD_TOKEN")) {
    problems.push("DISCORD_TOKEN is required when DISCORD_GUILD_ID is set");
  }
  if (options.requireOpenAIKey && !isSet("OPENAI_API_KEY")) {
    problems.push(
      "OPENAI_API_KEY is required to generate images: create one at https://platform.openai.com/api-keys " +
        "(or run `npm run fake:openai` and use the key and OPENAI_BASE_URL it prints)",
    );
  }
  return problems;
}

/**
 * What a process does: `all` (default) connects the platforms, acknowledges and runs turns; `ingress` connects
 * and acknowledges only; `worker` runs turns and delivers over the platforms' REST APIs, never opening a Discord
 * gateway session or a Slack receiver.
 */
export type Role = "all" | "ingress" | "worker";

export interface Config {
  role: Role;
  databaseUrl: string | undefined;
  dataDir: string;
  blobStore: "fs" | "s3";
  /** With `BLOB_STORE=s3`: the bucket, and where it is; credentials come from the AWS SDK's own chain. */
  s3: {
    bucket: string;
    endpoint: string | undefined;
    region: string | undefined;
    forcePathStyle: boolean;
  } | null;
  openai: { apiKey: string | undefined; baseUrl: string | undefined; imageModel: string; thinkModel: string };
  slack: {
    botToken: string;
    signingSecret: string | undefined;
    appToken: string | undefined;
    apiUrl: string | undefined;
  } | null;
  /** `guildId`: register `/imagine` for this one server (instant) instead of globally. */
  discord: { token: string; apiUrl: string | undefined; guildId?: string } | null;
  /** Where the bot is enabled, and who administers it (`src/access.ts`). */
  access: AccessConfig;
  port: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  workerConcurrency: number;
  /** On SIGTERM/SIGINT, how long running turns may take to finish and be delivered before they are handed back. */
  shutdownGraceMs: number;
  /**
   * How long a process may work an accepted platform event (download, check, record) before another pass, in
   * any process, takes it over.
   */
  inboxHoldMs: number;
  /** Drawing turns one person may start in a rolling hour (admins excepted); null: no limit. */
  turnsPerUserHour: number | null;
  /** Spend caps (admins excepted): `BUDGET_USER_DAILY_USD`, `BUDGET_CHANNEL_DAILY_USD`, `BUDGET_WORKSPACE_MONTHLY_USD`. */
  budgets: BudgetCap[];
  /** A turn estimated above this many dollars asks "Draw it for about $X?" first. */
  confirmAboveUsd: number;
  /** When set, `/metrics` requires `Authorization: Bearer <this>`. */
  metricsToken: string | undefined;
  /** Who the console adapter records as the author of its turns: the login name (`USER`), else "me". */
  consoleUser: string;
}

export interface LoadConfigOptions {
  /** `npm start` needs a key to generate; `db:migrate` does not. */
  requireOpenAIKey?: boolean;
}

/** Parses the environment; throws one AppError("config_invalid") that names every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, options: LoadConfigOptions = {}): Config {
  const parsed = EnvSchema.safeParse(env);
  const problems = [
    ...(parsed.success
      ? []
      : parsed.error.issues.map((issue) => `${issue.path.join(".") || "environment"} ${issue.message}`)),
    ...crossFieldProblems(env, options),
  ];
  if (!parsed.success || problems.length > 0) {
    const message = `threadcanvas cannot start; fix these environment variables:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`;
    throw new AppError("config_invalid", message);
  }
  const e = parsed.data;
  return {
    role: e.ROLE,
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.DATA_DIR ?? "./.threadcanvas"),
    blobStore: e.BLOB_STORE,
    s3:
      e.BLOB_STORE === "s3" && e.S3_BUCKET
        ? {
            bucket: e.S3_BUCKET,
            endpoint: e.S3_ENDPOINT,
            region: e.S3_REGION,
            forcePathStyle: e.S3_FORCE_PATH_STYLE,
          }
        : null,
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
    discord: e.DISCORD_TOKEN
      ? {
          token: e.DISCORD_TOKEN,
          apiUrl: e.DISCORD_API_URL,
          ...(e.DISCORD_GUILD_ID ? { guildId: e.DISCORD_GUILD_ID } : {}),
        }
      : null,
    access: {
      slack: { teams: e.SLACK_ALLOWED_TEAMS, channels: e.SLACK_ALLOWED_CHANNELS },
      discord: { guilds: e.DISCORD_ALLOWED_GUILDS, channels: e.DISCORD_ALLOWED_CHANNELS },
      admins: e.ADMIN_USERS ?? [],
    },
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    workerConcurrency: e.WORKER_CONCURRENCY,
    shutdownGraceMs: e.SHUTDOWN_GRACE_S * 1000,
    inboxHoldMs: e.INBOX_HOLD_S * 1000,
    turnsPerUserHour: e.RATE_USER_PER_HOUR ?? null,
    budgets: [
      ...(e.BUDGET_USER_DAILY_USD === null
        ? []
        : [{ scope: "user", period: "day", limitUsd: e.BUDGET_USER_DAILY_USD } as const]),
      ...(e.BUDGET_CHANNEL_DAILY_USD === null
        ? []
        : [{ scope: "channel", period: "day", limitUsd: e.BUDGET_CHANNEL_DAILY_USD } as const]),
      ...(e.BUDGET_WORKSPACE_MONTHLY_USD === null
        ? []
        : [{ scope: "workspace", period: "month", limitUsd: e.BUDGET_WORKSPACE_MONTHLY_USD } as const]),
    ],
    confirmAboveUsd: e.CONFIRM_ABOVE_USD ?? 0.5,
    metricsToken: e.METRICS_TOKEN,
    // Part of console thread keys (`console:<user>:<id>`), so only characters that are safe there.
    consoleUser: (env.USER ?? "").replace(/[^A-Za-z0-9_.-]/g, "") || "me",
  };
}
