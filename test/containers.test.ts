import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../src/config.ts";

/**
 * The container files (Dockerfile, compose.yaml), checked without Docker: what the app services set must be
 * what threadcanvas reads and accepts, the services must find each other, and the image must run what
 * `npm start` runs, as a non-root user, with production dependencies only.
 */

const ROOT = path.resolve(import.meta.dirname, "..");
const read = (file: string) => readFileSync(path.join(ROOT, file), "utf8");

// ---------------------------------------------------------------------------------------------------------
// compose.yaml

interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  depends_on?: Record<string, { condition?: string }> | string[];
  healthcheck?: { test?: string | string[] };
  ports?: (string | number | { target?: number })[];
  deploy?: { replicas?: number };
  stop_grace_period?: string;
}

interface Compose {
  services: Record<string, Service>;
}

/**
 * Compose's interpolation of `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
 * `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}` and `$$` (a literal `$`), against `host`.
 */
function interpolate(text: string, host: Record<string, string>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match, name?: string, operator?: string, operand?: string, bare?: string) => {
      if (match === "$$") return "$";
      if (bare !== undefined) return host[bare] ?? "";
      const key = name as string;
      const value = host[key];
      const set = operator?.startsWith(":") ? value !== undefined && value !== "" : value !== undefined;
      switch (operator?.replace(":", "")) {
        case "-":
          return set ? (value as string) : (operand ?? "");
        case "?":
          if (!set) throw new Error(`compose refuses to start: ${key}: ${operand}`);
          return value as string;
        case "+":
          return set ? (operand ?? "") : "";
        default:
          return value ?? "";
      }
    },
  );
}

function interpolateAll<T>(value: T, host: Record<string, string>): T {
  if (typeof value === "string") return interpolate(value, host) as T;
  if (Array.isArray(value)) return value.map((item) => interpolateAll(item, host)) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, interpolateAll(item, host)]),
    ) as T;
  }
  return value;
}

/** compose.yaml as `docker compose config` would see it with this host environment (anchors merged). */
function loadCompose(host: Record<string, string>): Compose {
  return interpolateAll(parse(read("compose.yaml"), { merge: true }) as Compose, host);
}

/** A service's environment as its process sees it (a key without a value passes the host's through). */
function environmentOf(service: Service, host: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  const entries = Array.isArray(service.environment)
    ? service.environment.map((line) => {
        const at = line.indexOf("=");
        return at === -1 ? ([line, null] as const) : ([line.slice(0, at), line.slice(at + 1)] as const);
      })
    : Object.entries(service.environment ?? {});
  for (const [name, value] of entries) {
    if (value === null || value === undefined) {
      if (host[name] !== undefined) env[name] = host[name];
    } else {
      env[name] = String(value);
    }
  }
  return env;
}

/** The app's services: those built from this repository. */
function appServices(compose: Compose): [string, Service][] {
  return Object.entries(compose.services).filter(([, service]) => service.build !== undefined);
}

function onlyService(compose: Compose, test: (service: Service) => boolean, what: string): [string, Service] {
  const found = Object.entries(compose.services).filter(([, service]) => test(service));
  expect(found, `exactly one ${what} service`).toHaveLength(1);
  return found[0] as [string, Service];
}

const postgresService = (compose: Compose) =>
  onlyService(compose, (service) => /^postgres(:|$)/.test(service.image ?? ""), "postgres");
const minioService = (compose: Compose) =>
  onlyService(compose, (service) => /^(quay\.io\/)?minio\/minio(:|$)/.test(service.image ?? ""), "minio");
const bucketService = (compose: Compose) =>
  onlyService(compose, (service) => /^(quay\.io\/)?minio\/mc(:|$)/.test(service.image ?? ""), "minio/mc");

/** The shell text a service runs (its entrypoint and command, joined). */
function scriptOf(service: Service): string {
  const parts = [service.entrypoint, service.command].flatMap((part) =>
    part === undefined ? [] : Array.isArray(part) ? part : [part],
  );
  return parts.join(" ");
}

/** The healthcheck's command as argv (`CMD` form), or the shell text (`CMD-SHELL` or a string). */
function healthcheckOf(service: Service): string[] {
  const test = service.healthcheck?.test;
  if (test === undefined) return [];
  if (typeof test === "string") return ["CMD-SHELL", test];
  return test;
}

function seconds(duration: string | undefined): number {
  const match = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(duration ?? "");
  if (!duration || !match) return 10; // Docker's default stop timeout
  return Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0);
}

/** Names documented in .env.example, set or commented out (`# NAME=…`). */
function envExampleNames(): Set<string> {
  const names = new Set<string>();
  for (const line of read(".env.example").split("\n")) {
    const match = /^#?\s*([A-Z][A-Z0-9_]*)=/.exec(line);
    if (match?.[1]) names.add(match[1]);
  }
  return names;
}

// What a host typically exports before `docker compose up`: the key and one platform.
const HOST = {
  OPENAI_API_KEY: "sk-test-123",
  SLACK_BOT_TOKEN: "xoxb-1-2-3",
  SLACK_SIGNING_SECRET: "signing-secret",
  DISCORD_TOKEN: "discord-token",
};

describe("compose.yaml", () => {
  it("runs exactly one ingress and two workers, each from this repository's image", () => {
    const compose = loadCompose(HOST);
    const count = (role: string) =>
      appServices(compose)
        .filter(([, service]) => environmentOf(service).ROLE === role)
        .reduce((sum, [, service]) => sum + (service.deploy?.replicas ?? 1), 0);
    expect(count("ingress")).toBe(1);
    expect(count("worker")).toBe(2);
    expect(count("all")).toBe(0);
    for (const [name, service] of appServices(compose)) {
      expect(["ingress", "worker"], `${name}: ROLE`).toContain(environmentOf(service).ROLE);
    }
  });

  it("sets only variables threadcanvas or the AWS SDK reads", () => {
    // EnvSchema is not exported, so the list of names threadcanvas reads is .env.example's (it documents every
    // one), plus the AWS SDK's own credential variables that BLOB_STORE=s3 uses.
    const known = new Set([...envExampleNames(), "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
    expect(known).toContain("ROLE");
    expect(known).toContain("DATABASE_URL"); // the parse found the list
    for (const [name, service] of appServices(loadCompose(HOST))) {
      const unknown = Object.keys(environmentOf(service)).filter((variable) => !known.has(variable));
      expect(unknown, `${name} sets variables nothing reads`).toEqual([]);
    }
  });

  it("refuses to start a role without a platform token (it would have nothing to connect or deliver to)", () => {
    const host = { OPENAI_API_KEY: "sk-only" };
    for (const [, service] of appServices(loadCompose(host))) {
      const env = environmentOf(service, host);
      expect(() => loadConfig(env, { requireOpenAIKey: true })).toThrow(
        `ROLE=${env.ROLE} needs SLACK_BOT_TOKEN or DISCORD_TOKEN`,
      );
    }
  });

  it("gives every app service an environment loadConfig accepts: its role, PostgreSQL and the S3 bucket", () => {
    const hosts: Record<string, string>[] = [
      HOST,
      { OPENAI_API_KEY: "sk-only", DISCORD_TOKEN: "discord-only" },
      { ...HOST, S3_BUCKET: "team-images" },
    ];
    for (const host of hosts) {
      const compose = loadCompose(host);
      const [postgresName, postgres] = postgresService(compose);
      const [minioName] = minioService(compose);
      const pgEnv = environmentOf(postgres);
      for (const [name, service] of appServices(compose)) {
        const env = environmentOf(service, host);
        const config = loadConfig(env, { requireOpenAIKey: true });
        expect(config.role, name).toBe(env.ROLE);
        expect(config.openai.apiKey).toBe(host.OPENAI_API_KEY);
        expect(config.blobStore).toBe("s3");
        expect(config.s3).toEqual({
          bucket: host.S3_BUCKET ?? expect.any(String),
          endpoint: `http://${minioName}:9000`,
          region: expect.any(String),
          forcePathStyle: true,
        });
        const db = new URL(config.databaseUrl ?? "");
        expect(db.protocol).toBe("postgres:");
        expect(db.hostname).toBe(postgresName);
        expect(db.port || "5432").toBe("5432");
        expect(db.username).toBe(pgEnv.POSTGRES_USER);
        expect(decodeURIComponent(db.password)).toBe(pgEnv.POSTGRES_PASSWORD);
        expect(db.pathname).toBe(`/${pgEnv.POSTGRES_DB}`);
        expect(config.slack === null).toBe(host.SLACK_BOT_TOKEN === undefined);
        expect(config.discord === null).toBe(host.DISCORD_TOKEN === undefined);
      }
    }
  });

  it("refuses to start without OPENAI_API_KEY", () => {
    expect(() => loadCompose({})).toThrow(/OPENAI_API_KEY/);
  });

  it("creates the bucket the app uses, on the MinIO the app reaches, with the app's credentials", () => {
    const hosts: Record<string, string>[] = [
      HOST,
      { ...HOST, S3_BUCKET: "team-images", MINIO_ROOT_PASSWORD: "long-password" },
    ];
    for (const host of hosts) {
      const compose = loadCompose(host);
      const [bucketName, createbucket] = bucketService(compose);
      const [minioName, minio] = minioService(compose);
      const script = scriptOf(createbucket);
      const alias = /mc alias set (\S+) (\S+)/.exec(script);
      expect(alias, "mc alias set <alias> <url>").not.toBeNull();
      const made = new RegExp(`mc mb (?:--ignore-existing |-p )*${alias?.[1]}/([A-Za-z0-9.-]+)`).exec(script);
      expect(made, "mc mb <alias>/<bucket>").not.toBeNull();
      expect(createbucket.depends_on).toMatchObject({ [minioName]: { condition: "service_healthy" } });
      expect(healthcheckOf(minio).length).toBeGreaterThan(0);
      const minioEnv = environmentOf(minio);
      for (const [name, service] of appServices(compose)) {
        const env = environmentOf(service, host);
        expect(env.S3_BUCKET, name).toBe(made?.[1]);
        expect(alias?.[2]).toBe(env.S3_ENDPOINT);
        expect(env.AWS_ACCESS_KEY_ID).toBe(minioEnv.MINIO_ROOT_USER);
        expect(env.AWS_SECRET_ACCESS_KEY).toBe(minioEnv.MINIO_ROOT_PASSWORD);
        expect(service.depends_on).toMatchObject({
          [bucketName]: { condition: "service_completed_successfully" },
        });
      }
      if (host.S3_BUCKET) expect(made?.[1]).toBe(host.S3_BUCKET);
    }
  });

  it("starts the app services once PostgreSQL answers, and checks them at GET /healthz", () => {
    const compose = loadCompose(HOST);
    const [postgresName, postgres] = postgresService(compose);
    expect(healthcheckOf(postgres).join(" ")).toContain("pg_isready");
    for (const [name, service] of appServices(compose)) {
      expect(service.depends_on, name).toMatchObject({ [postgresName]: { condition: "service_healthy" } });
      expect(healthcheckOf(service)[0], name).toMatch(/^CMD(-SHELL)?$/);
      expect(healthcheckOf(service).join(" "), name).toContain("/healthz");
    }
  });

  it("publishes port 3000 on the ingress only", () => {
    for (const [name, service] of appServices(loadCompose(HOST))) {
      const env = environmentOf(service);
      const targets = (service.ports ?? []).map((port) =>
        typeof port === "object" ? String(port.target) : String(port).split(":").at(-1),
      );
      if (env.ROLE === "ingress") expect(targets, name).toEqual([env.PORT ?? "3000"]);
      else expect(targets, name).toEqual([]);
    }
  });

  it("lets running turns finish on stop: the stop grace period is longer than SHUTDOWN_GRACE_S", () => {
    for (const [name, service] of appServices(loadCompose(HOST))) {
      const graceMs = loadConfig(environmentOf(service, HOST)).shutdownGraceMs;
      expect(seconds(service.stop_grace_period) * 1000, name).toBeGreaterThan(graceMs);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions, with continuation lines joined and comments dropped, split into stages at each FROM. */
function dockerfileStages(): {
  args: Record<string, string>;
  stages: { name: string; lines: Instruction[] }[];
} {
  const text = read("Dockerfile")
    .split("\n")
    .filter((line) => !/^\s*#/.test(line))
    .join("\n")
    .replace(/\\\n/g, " ");
  const args: Record<string, string> = {};
  const stages: { name: string; lines: Instruction[] }[] = [];
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const keyword = (match[1] as string).toUpperCase();
    const rest = (match[2] as string).trim();
    if (keyword === "FROM") {
      stages.push({ name: /\bAS\s+(\S+)/i.exec(rest)?.[1] ?? String(stages.length), lines: [] });
    }
    if (keyword === "ARG" && stages.length === 0) {
      const [name, value] = rest.split("=");
      if (name) args[name] = value ?? "";
    }
    stages.at(-1)?.lines.push({ keyword, args: rest });
  }
  return { args, stages };
}

function jsonArgs(text: string): string[] {
  const argv = JSON.parse(text) as unknown;
  expect(Array.isArray(argv), `exec form (a JSON array): ${text}`).toBe(true);
  return argv as string[];
}

describe("Dockerfile", () => {
  const { args, stages } = dockerfileStages();
  const runtime = stages.at(-1) ?? { name: "", lines: [] };
  const find = (keyword: string) => runtime.lines.filter((line) => line.keyword === keyword);

  it("builds in stages, every one on Node 24", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) {
      const from = stage.lines[0]?.args.split(/\s+/)[0] ?? "";
      const image = from.replace(/\$\{?(\w+)\}?/g, (_, name: string) => args[name] ?? "");
      expect(image, `stage ${stage.name}`).toMatch(/^node:24(\.[\d.]+)?-(bookworm|trixie)(-slim)?$/);
    }
  });

  it("takes the runtime's node_modules from an `npm ci --omit=dev` stage", () => {
    const prodStage = stages.find((stage) =>
      stage.lines.some((line) => line.keyword === "RUN" && /\bnpm ci\b.*--omit=dev/.test(line.args)),
    );
    expect(prodStage, "a stage that runs npm ci --omit=dev").toBeDefined();
    const copied = find("COPY").some((line) =>
      new RegExp(`--from=${prodStage?.name}\\s+\\S*node_modules\\s`).test(line.args),
    );
    expect(copied || prodStage === runtime).toBe(true);
  });

  it("has what `npm start` runs at run time: tsx is a production dependency, and the copied paths exist", () => {
    const pkg = JSON.parse(read("package.json")) as { dependencies: Record<string, string> };
    for (const [index, word] of jsonArgs(find("CMD")[0]?.args ?? "[]").entries()) {
      if (word === "--import") {
        const module = jsonArgs(find("CMD")[0]?.args ?? "[]")[index + 1] ?? "";
        expect(Object.keys(pkg.dependencies), `--import ${module}`).toContain(module);
      }
    }
    const copied = find("COPY").flatMap((line) => {
      const words = line.args.split(/\s+/).filter((word) => !word.startsWith("--"));
      return words.slice(0, -1).filter((source) => source !== "/app/node_modules");
    });
    for (const required of ["src", "adapters", "migrations", "package.json"]) {
      expect(copied.map((source) => source.replace(/^\/app\//, ""))).toContain(required);
    }
    for (const source of copied)
      expect(existsSync(path.join(ROOT, source.replace(/^\/app\//, "")))).toBe(true);
  });

  it("runs src/main.ts the way `npm start` does, without npm in between", () => {
    const cmd = find("CMD");
    expect(cmd).toHaveLength(1);
    const start = (JSON.parse(read("package.json")) as { scripts: { start: string } }).scripts.start;
    expect(jsonArgs(cmd[0]?.args ?? "")).toEqual(start.split(/\s+/));
    expect(start).toContain("src/main.ts");
    expect(find("ENTRYPOINT")).toEqual([]);
  });

  it("runs as a non-root user that owns the /data volume", () => {
    const keywords = runtime.lines.map((line) => line.keyword);
    const user = runtime.lines.findLast((line) => line.keyword === "USER");
    expect(user?.args).toBeDefined();
    expect(["root", "0", "0:0"]).not.toContain(user?.args);
    expect(keywords.lastIndexOf("USER")).toBeLessThan(keywords.indexOf("CMD"));
    expect(
      find("ENV")
        .map((line) => line.args)
        .join(" "),
    ).toMatch(/\bDATA_DIR=\/data\b/);
    expect(find("VOLUME").map((line) => line.args)).toContain("/data");
    expect(
      find("RUN").some((line) => new RegExp(`chown\\s+${user?.args}(:\\S+)?\\s+/data`).test(line.args)),
    ).toBe(true);
    expect(find("EXPOSE").map((line) => line.args)).toContain("3000");
  });

  it("keeps modules, local data and secrets out of the build context, and the sources in", () => {
    const ignored = read(".dockerignore")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith("#"));
    for (const entry of ["node_modules", ".git", ".env", ".threadcanvas"]) expect(ignored).toContain(entry);
    for (const kept of ["src", "adapters", "migrations", "test", "package.json", "package-lock.json"]) {
      expect(ignored).not.toContain(kept);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// The health checks themselves, run against a stand-in server: 200 passes, 503 or no answer fails.

describe("health checks", () => {
  let server: Server;
  let port = 0;
  let status = 200;
  const asked: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      asked.push(req.url ?? "");
      res.writeHead(req.url === "/healthz" ? status : 404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function exitCode(argv: string[], env: Record<string, string>): Promise<number> {
    expect(argv[0]).toBe("node");
    try {
      await promisify(execFile)(process.execPath, argv.slice(1), { env: { ...process.env, ...env } });
      return 0;
    } catch (error) {
      return (error as { code?: number }).code ?? -1;
    }
  }

  const commands = (): [string, string[]][] => {
    const healthcheck = dockerfileStages()
      .stages.at(-1)
      ?.lines.find((line) => line.keyword === "HEALTHCHECK");
    const dockerArgv = jsonArgs(/\bCMD\s+(\[.*\])\s*$/.exec(healthcheck?.args ?? "")?.[1] ?? "null");
    const composeArgv = appServices(loadCompose(HOST)).map(
      ([name, service]) => [`compose ${name}`, healthcheckOf(service).slice(1)] as [string, string[]],
    );
    return [["Dockerfile", dockerArgv], ...composeArgv];
  };

  it("passes while GET /healthz on $PORT answers 200", async () => {
    status = 200;
    for (const [where, argv] of commands()) {
      asked.length = 0;
      expect(await exitCode(argv, { PORT: String(port) }), where).toBe(0);
      expect(asked).toEqual(["/healthz"]);
    }
  });

  it("fails while GET /healthz answers 503, and when nothing listens", async () => {
    status = 503;
    for (const [where, argv] of commands()) {
      expect(await exitCode(argv, { PORT: String(port) }), where).not.toBe(0);
    }
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const unused = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    for (const [where, argv] of commands()) {
      expect(await exitCode(argv, { PORT: String(unused) }), where).not.toBe(0);
    }
  });
});
