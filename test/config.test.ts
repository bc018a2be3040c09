import path from "node:path";
import { describe, expect, it } from "vitest";
import { type Config, loadConfig } from "../src/config.ts";
import { AppError } from "../src/errors.ts";

const DEFAULTS: Config = {
  role: "all",
  databaseUrl: undefined,
  dataDir: path.resolve("./.threadcanvas"),
  blobStore: "fs",
  s3: null,
  openai: { apiKey: undefined, baseUrl: undefined, imageModel: "gpt-image-2", thinkModel: "gpt-5.5" },
  slack: null,
  discord: null,
  port: 3000,
  logLevel: "info",
  workerConcurrency: 4,
  shutdownGraceMs: 90_000,
  inboxHoldMs: 120_000,
  turnsPerUserHour: null,
  budgets: [],
  confirmAboveUsd: 0.5,
  metricsToken: undefined,
  access: {
    slack: { teams: null, channels: null },
    discord: { guilds: null, channels: null },
    admins: [],
  },
  consoleUser: "me",
};

/** Every variable the config reads, set to a valid non-default value. */
const FULL_ENV = {
  DATABASE_URL: "postgres://bot:pw@db.internal:5432/threadcanvas",
  DATA_DIR: "/var/lib/threadcanvas",
  BLOB_STORE: "fs",
  S3_BUCKET: "images",
  S3_ENDPOINT: "https://s3.eu-west-1.amazonaws.com",
  S3_REGION: "eu-west-1",
  S3_FORCE_PATH_STYLE: "true",
  OPENAI_API_KEY: "sk-test-123",
  OPENAI_BASE_URL: "http://127.0.0.1:4010/v1",
  IMAGE_MODEL: "gpt-image-2-2026-04-21",
  THINK_MODEL: "gpt-5.5-mini",
  SLACK_BOT_TOKEN: "xoxb-1-2-3",
  SLACK_SIGNING_SECRET: "signing-secret",
  SLACK_APP_TOKEN: "xapp-1-2-3",
  SLACK_API_URL: "http://127.0.0.1:4020/api/",
  DISCORD_TOKEN: "discord-token",
  DISCORD_API_URL: "http://127.0.0.1:4030/api",
  DISCORD_GUILD_ID: "1200000000000000001",
  PORT: "8080",
  LOG_LEVEL: "debug",
  WORKER_CONCURRENCY: "16",
  SHUTDOWN_GRACE_S: "30",
  INBOX_HOLD_S: "45",
  RATE_USER_PER_HOUR: "30",
  BUDGET_USER_DAILY_USD: "5",
  BUDGET_CHANNEL_DAILY_USD: "20.50",
  BUDGET_WORKSPACE_MONTHLY_USD: "300",
  CONFIRM_ABOVE_USD: "1.25",
  METRICS_TOKEN: "scrape-secret",
  ROLE: "worker",
  SLACK_ALLOWED_TEAMS: "T0123ABCD",
  SLACK_ALLOWED_CHANNELS: "C0123ABCD, G0456EFGH",
  DISCORD_ALLOWED_GUILDS: "1200000000000000001",
  DISCORD_ALLOWED_CHANNELS: "1200000000000000002,1200000000000000003",
  ADMIN_USERS: "slack:U0123ABCD, discord:1200000000000000009",
  USER: "alice",
};

function configError(env: NodeJS.ProcessEnv, options: { requireOpenAIKey?: boolean } = {}): AppError {
  try {
    loadConfig(env, options);
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("config_invalid");
    return error as AppError;
  }
  throw new Error("expected loadConfig to throw");
}

/** The listed problems, one per `  - ` line. */
function problems(error: AppError): string[] {
  return error.message
    .split("\n")
    .filter((line) => line.startsWith("  - "))
    .map((line) => line.slice(4));
}

describe("loadConfig", () => {
  it("uses the documented defaults for an empty environment", () => {
    expect(loadConfig({})).toEqual(DEFAULTS);
  });

  it("reads every variable", () => {
    expect(loadConfig(FULL_ENV, { requireOpenAIKey: true })).toEqual({
      role: "worker",
      databaseUrl: "postgres://bot:pw@db.internal:5432/threadcanvas",
      dataDir: "/var/lib/threadcanvas",
      blobStore: "fs",
      s3: null,
      openai: {
        apiKey: "sk-test-123",
        baseUrl: "http://127.0.0.1:4010/v1",
        imageModel: "gpt-image-2-2026-04-21",
        thinkModel: "gpt-5.5-mini",
      },
      slack: {
        botToken: "xoxb-1-2-3",
        signingSecret: "signing-secret",
        appToken: "xapp-1-2-3",
        apiUrl: "http://127.0.0.1:4020/api/",
      },
      discord: {
        token: "discord-token",
        apiUrl: "http://127.0.0.1:4030/api",
        guildId: "1200000000000000001",
      },
      port: 8080,
      logLevel: "debug",
      workerConcurrency: 16,
      shutdownGraceMs: 30_000,
      inboxHoldMs: 45_000,
      turnsPerUserHour: 30,
      budgets: [
        { scope: "user", period: "day", limitUsd: 5 },
        { scope: "channel", period: "day", limitUsd: 20.5 },
        { scope: "workspace", period: "month", limitUsd: 300 },
      ],
      confirmAboveUsd: 1.25,
      metricsToken: "scrape-secret",
      access: {
        slack: { teams: ["T0123ABCD"], channels: ["C0123ABCD", "G0456EFGH"] },
        discord: {
          guilds: ["1200000000000000001"],
          channels: ["1200000000000000002", "1200000000000000003"],
        },
        admins: ["slack:U0123ABCD", "discord:1200000000000000009"],
      },
      consoleUser: "alice",
    } satisfies Config);
  });

  it("ignores variables it does not know", () => {
    expect(loadConfig({ HOME: "/root", PATH: "/bin", NODE_ENV: "test" })).toEqual(DEFAULTS);
  });

  it("takes the console user from USER, keeping only characters safe in a thread key", () => {
    expect(loadConfig({ USER: "dana:o'brien" }).consoleUser).toBe("danaobrien");
    expect(loadConfig({ USER: ":::" }).consoleUser).toBe("me");
  });

  it("resolves DATA_DIR against the working directory", () => {
    expect(loadConfig({ DATA_DIR: "data" }).dataDir).toBe(path.resolve("data"));
  });

  it("treats blank and whitespace-only values as unset, so defaults apply", () => {
    for (const blank of ["", "   ", "\t\n"]) {
      const env = Object.fromEntries(Object.keys(FULL_ENV).map((name) => [name, blank]));
      expect(loadConfig(env), JSON.stringify(blank)).toEqual(DEFAULTS);
    }
  });

  it("treats a blank OPENAI_API_KEY as missing when one is required", () => {
    expect(problems(configError({ OPENAI_API_KEY: "  " }, { requireOpenAIKey: true }))).toEqual([
      expect.stringMatching(/^OPENAI_API_KEY is required to generate images/),
    ]);
  });

  it("trims surrounding spaces from values", () => {
    const config = loadConfig({
      OPENAI_API_KEY: " sk-1 \n",
      PORT: " 8080 ",
      LOG_LEVEL: " warn ",
      DISCORD_TOKEN: " t ",
    });
    expect(config.openai.apiKey).toBe("sk-1");
    expect(config.port).toBe(8080);
    expect(config.logLevel).toBe("warn");
    expect(config.discord).toEqual({ token: "t", apiUrl: undefined });
  });

  it("requires OPENAI_API_KEY only when asked to", () => {
    expect(loadConfig({}).openai.apiKey).toBeUndefined();
    const error = configError({}, { requireOpenAIKey: true });
    expect(problems(error)).toEqual([
      expect.stringMatching(/^OPENAI_API_KEY is required .*npm run fake:openai/),
    ]);
    expect(loadConfig({ OPENAI_API_KEY: "sk-1" }, { requireOpenAIKey: true }).openai.apiKey).toBe("sk-1");
  });

  it("names every problem in one error", () => {
    const error = configError(
      {
        PORT: "http",
        DATABASE_URL: "mysql://localhost/db",
        LOG_LEVEL: "loud",
        WORKER_CONCURRENCY: "0",
        OPENAI_BASE_URL: "localhost:4010",
        SLACK_BOT_TOKEN: "xoxb-1",
      },
      { requireOpenAIKey: true },
    );
    expect(error.message).toMatch(/^threadcanvas cannot start; fix these environment variables:\n/);
    expect(problems(error)).toEqual([
      "DATABASE_URL must start with postgres:// or postgresql:// (leave it unset to use the embedded database)",
      "OPENAI_BASE_URL must be a full http:// or https:// URL (e.g. http://127.0.0.1:4010/v1)",
      "PORT must be a whole number from 0 to 65535",
      "LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent",
      "WORKER_CONCURRENCY must be a whole number from 1 to 64",
      "SLACK_SIGNING_SECRET is required with SLACK_BOT_TOKEN over HTTP (or set SLACK_APP_TOKEN for Socket Mode)",
      expect.stringMatching(/^OPENAI_API_KEY is required to generate images/),
    ]);
  });

  it("never repeats secret values in its message", () => {
    const error = configError({ SLACK_BOT_TOKEN: "xoxp-very-secret", SLACK_APP_TOKEN: "xoxb-also-secret" });
    expect(error.message).not.toMatch(/very-secret|also-secret/);
    expect(problems(error)).toHaveLength(2);
  });

  describe("PORT", () => {
    it.each([
      ["0", 0],
      ["80", 80],
      ["65535", 65535],
    ])("accepts %s", (value, port) => {
      expect(loadConfig({ PORT: value }).port).toBe(port);
    });

    it.each(["65536", "-1", "80.5", "0x50", "1e3", "abc", "8080abc"])("rejects %s", (value) => {
      expect(problems(configError({ PORT: value }))).toEqual(["PORT must be a whole number from 0 to 65535"]);
    });
  });

  describe("WORKER_CONCURRENCY", () => {
    it.each(["0", "65", "two", "1.5"])("rejects %s", (value) => {
      expect(problems(configError({ WORKER_CONCURRENCY: value }))).toEqual([
        "WORKER_CONCURRENCY must be a whole number from 1 to 64",
      ]);
    });

    it("accepts 1 and 64", () => {
      expect(loadConfig({ WORKER_CONCURRENCY: "1" }).workerConcurrency).toBe(1);
      expect(loadConfig({ WORKER_CONCURRENCY: "64" }).workerConcurrency).toBe(64);
    });
  });

  describe("budgets and CONFIRM_ABOVE_USD", () => {
    it.each(["-1", "five", "$5", "1,50", "0x10", "1e3", "2.123456"])("rejects %s", (value) => {
      expect(problems(configError({ BUDGET_USER_DAILY_USD: value, CONFIRM_ABOVE_USD: value }))).toEqual([
        "BUDGET_USER_DAILY_USD must be an amount in US dollars, like 5 or 12.50 (leave it unset for no cap)",
        "CONFIRM_ABOVE_USD must be an amount in US dollars, like 5 or 12.50 (0 asks before every image; the default is 0.50)",
      ]);
    });

    it("takes 0 as a cap of nothing and as asking before every image", () => {
      const config = loadConfig({ BUDGET_WORKSPACE_MONTHLY_USD: "0", CONFIRM_ABOVE_USD: "0" });
      expect(config.budgets).toEqual([{ scope: "workspace", period: "month", limitUsd: 0 }]);
      expect(config.confirmAboveUsd).toBe(0);
    });
  });

  it("accepts every pino level, in any case", () => {
    for (const level of ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const) {
      expect(loadConfig({ LOG_LEVEL: level }).logLevel).toBe(level);
      expect(loadConfig({ LOG_LEVEL: level.toUpperCase() }).logLevel).toBe(level);
    }
  });

  it("accepts postgres:// and postgresql:// database URLs", () => {
    expect(loadConfig({ DATABASE_URL: "postgresql://localhost/db" }).databaseUrl).toBe(
      "postgresql://localhost/db",
    );
    expect(problems(configError({ DATABASE_URL: "localhost:5432" }))).toEqual([
      expect.stringMatching(/^DATABASE_URL must start with postgres:\/\//),
    ]);
  });

  it("takes BLOB_STORE=s3 with its bucket, and says the bucket is missing without one", () => {
    expect(problems(configError({ BLOB_STORE: "s3" }))).toEqual([
      "S3_BUCKET is required with BLOB_STORE=s3 (the bucket every process keeps images in)",
    ]);
    expect(loadConfig({ BLOB_STORE: "S3", S3_BUCKET: "images" })).toMatchObject({
      blobStore: "s3",
      s3: { bucket: "images", endpoint: undefined, region: undefined, forcePathStyle: false },
    });
    expect(problems(configError({ BLOB_STORE: "gcs" }))).toEqual(["BLOB_STORE must be one of fs, s3"]);
    expect(problems(configError({ S3_FORCE_PATH_STYLE: "yes" }))).toEqual([
      "S3_FORCE_PATH_STYLE must be one of true, false, 1, 0",
    ]);
    expect(loadConfig({ BLOB_STORE: "FS" }).blobStore).toBe("fs");
  });

  it("reads ROLE: all by default, ingress or worker, and names the choices for anything else", () => {
    expect(loadConfig({ ROLE: "Ingress", DISCORD_TOKEN: "t" }).role).toBe("ingress");
    expect(loadConfig({ ROLE: "worker", SLACK_BOT_TOKEN: "xoxb-1", SLACK_APP_TOKEN: "xapp-1" }).role).toBe(
      "worker",
    );
    expect(loadConfig({ ROLE: " " }).role).toBe("all");
    expect(problems(configError({ ROLE: "both" }))).toEqual(["ROLE must be one of all, ingress, worker"]);
    expect(problems(configError({ ROLE: "worker" }))).toEqual([
      "ROLE=worker needs SLACK_BOT_TOKEN or DISCORD_TOKEN (the console runs only as ROLE=all)",
    ]);
  });

  it.each(["OPENAI_BASE_URL", "SLACK_API_URL", "DISCORD_API_URL", "S3_ENDPOINT"])(
    "%s must be an http(s) URL",
    (name) => {
      for (const bad of ["localhost:4010", "not a url", "ftp://example.com", "127.0.0.1:4010"]) {
        expect(problems(configError({ [name]: bad })), bad).toEqual([
          expect.stringMatching(new RegExp(`^${name} must be a full http:// or https:// URL`)),
        ]);
      }
      expect(() => loadConfig({ [name]: "https://example.com/api/" })).not.toThrow();
    },
  );

  describe("Slack", () => {
    it("runs over HTTP with a bot token and signing secret", () => {
      expect(loadConfig({ SLACK_BOT_TOKEN: "xoxb-1", SLACK_SIGNING_SECRET: "s" }).slack).toEqual({
        botToken: "xoxb-1",
        signingSecret: "s",
        appToken: undefined,
        apiUrl: undefined,
      });
    });

    it("runs in Socket Mode with a bot token and app token (no signing secret needed)", () => {
      expect(loadConfig({ SLACK_BOT_TOKEN: "xoxb-1", SLACK_APP_TOKEN: "xapp-1" }).slack).toEqual({
        botToken: "xoxb-1",
        signingSecret: undefined,
        appToken: "xapp-1",
        apiUrl: undefined,
      });
    });

    it("needs a signing secret or an app token with a bot token", () => {
      expect(problems(configError({ SLACK_BOT_TOKEN: "xoxb-1" }))).toEqual([
        "SLACK_SIGNING_SECRET is required with SLACK_BOT_TOKEN over HTTP (or set SLACK_APP_TOKEN for Socket Mode)",
      ]);
      expect(problems(configError({ SLACK_BOT_TOKEN: "xoxb-1", SLACK_SIGNING_SECRET: " " }))).toHaveLength(1);
    });

    it.each([
      [{ SLACK_APP_TOKEN: "xapp-1" }, "SLACK_BOT_TOKEN is required when SLACK_APP_TOKEN is set"],
      [{ SLACK_SIGNING_SECRET: "s" }, "SLACK_BOT_TOKEN is required when SLACK_SIGNING_SECRET is set"],
      [
        { SLACK_APP_TOKEN: "xapp-1", SLACK_SIGNING_SECRET: "s", SLACK_BOT_TOKEN: "" },
        "SLACK_BOT_TOKEN is required when SLACK_APP_TOKEN or SLACK_SIGNING_SECRET is set",
      ],
    ])("needs a bot token with the other Slack variables: %j", (env, problem) => {
      expect(problems(configError(env))).toEqual([problem]);
    });

    it("checks token prefixes", () => {
      expect(problems(configError({ SLACK_BOT_TOKEN: "xoxp-1", SLACK_SIGNING_SECRET: "s" }))).toEqual([
        "SLACK_BOT_TOKEN must be a bot token starting with xoxb-",
      ]);
      expect(problems(configError({ SLACK_BOT_TOKEN: "xoxb-1", SLACK_APP_TOKEN: "xoxb-2" }))).toEqual([
        "SLACK_APP_TOKEN must be an app-level token starting with xapp- (it turns on Socket Mode)",
      ]);
    });

    it("stays off without a bot token, even with SLACK_API_URL set", () => {
      expect(loadConfig({ SLACK_API_URL: "http://127.0.0.1:1/api/" }).slack).toBeNull();
    });
  });

  it("enables Discord with a token", () => {
    expect(loadConfig({ DISCORD_TOKEN: "t" }).discord).toEqual({ token: "t", apiUrl: undefined });
    expect(loadConfig({ DISCORD_API_URL: "http://127.0.0.1:1/api" }).discord).toBeNull();
  });

  it("takes DISCORD_GUILD_ID (registering for one server) as a server id, with a token", () => {
    expect(loadConfig({ DISCORD_TOKEN: "t", DISCORD_GUILD_ID: " 1200000000000000001 " }).discord).toEqual({
      token: "t",
      apiUrl: undefined,
      guildId: "1200000000000000001",
    });
    expect(problems(configError({ DISCORD_TOKEN: "t", DISCORD_GUILD_ID: "my-server" }))).toEqual([
      expect.stringMatching(/^DISCORD_GUILD_ID must be a server id/),
    ]);
    expect(problems(configError({ DISCORD_GUILD_ID: "1200000000000000001" }))).toEqual([
      "DISCORD_TOKEN is required when DISCORD_GUILD_ID is set",
    ]);
  });
});

describe("who may use it, and where", () => {
  it("reads the allow lists and admins as comma lists, ignoring spaces and empty items", () => {
    const { access } = loadConfig({
      SLACK_ALLOWED_CHANNELS: " C0001 ,, C0002 ,",
      ADMIN_USERS: "discord:1200000000000000009",
    });
    expect(access).toEqual({
      slack: { teams: null, channels: ["C0001", "C0002"] },
      discord: { guilds: null, channels: null },
      admins: ["discord:1200000000000000009"],
    });
  });

  it("names the ids that are not of the platform's form", () => {
    expect(
      problems(
        configError({
          SLACK_ALLOWED_TEAMS: "T0001,acme",
          SLACK_ALLOWED_CHANNELS: "#general",
          DISCORD_ALLOWED_GUILDS: "my-server",
          DISCORD_ALLOWED_CHANNELS: "1200000000000000002,12",
          ADMIN_USERS: "U0001,slack:U0002,discord:alice",
        }),
      ),
    ).toEqual([
      "SLACK_ALLOWED_TEAMS must list Slack team ids (T…), comma-separated; not: acme",
      "SLACK_ALLOWED_CHANNELS must list Slack channel ids (C… or G…), comma-separated; not: #general",
      "DISCORD_ALLOWED_GUILDS must list Discord server ids (17 to 20 digits), comma-separated; not: my-server",
      "DISCORD_ALLOWED_CHANNELS must list Discord channel ids (17 to 20 digits), comma-separated; not: 12",
      "ADMIN_USERS must list users as slack:<user id> or discord:<user id>, comma-separated; not: U0001, discord:alice",
    ]);
  });
});
