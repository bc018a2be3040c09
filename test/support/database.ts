import { createHash, randomBytes } from "node:crypto";
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { type DbHandle, MIGRATIONS_FOLDER, openDatabase } from "../../src/store/database.ts";

/**
 * Fresh, migrated databases for tests, cheaply.
 *
 * - PGlite (TEST_DATABASE_URL empty): initdb inside WASM takes ~4–5 s, loading a dumped data dir ~0.5 s. So a
 *   migrated database is dumped once to `.test-data/pglite-template-<id>.tar` and every test file loads it.
 * - PostgreSQL (TEST_DATABASE_URL set): a migrated `tc_template_<id>` database is built once, and every call
 *   clones it with `CREATE DATABASE … TEMPLATE` (~40 ms) and drops the clone in `close()`.
 *
 * `<id>` hashes the migration files and the PGlite version, so a new migration gets a new template and old
 * runs keep theirs. Templates are built in `test/support/global-setup.ts`; if that did not run, the first
 * caller builds them (under temporary names renamed into place, so concurrent runs cannot see a half-built one).
 */

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const TEST_DATA_DIR = path.join(REPO_ROOT, ".test-data");
/** Leftovers from crashed runs older than this are removed when a template is ensured. */
const STALE_MS = 24 * 60 * 60 * 1000;

export interface TestDatabase extends DbHandle {
  /** The clone's URL on PostgreSQL, for pg-boss's own pool and child processes; undefined on PGlite. */
  databaseUrl: string | undefined;
}

/** A migrated database of its own: in-memory PGlite, or a fresh clone on the TEST_DATABASE_URL server. */
export async function openTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.TEST_DATABASE_URL?.trim();
  if (!serverUrl) {
    const handle = await openDatabase({ loadDataDir: await pgliteTemplateBlob() });
    return { ...handle, databaseUrl: undefined };
  }
  return openServerDatabase(serverUrl, "tc_test", await ensurePgTemplate(serverUrl));
}

/**
 * A database of its own with nothing in it, not even the migrations: in-memory PGlite (initdb, ~4 s), or a new
 * database on the TEST_DATABASE_URL server. For tests of the migrations themselves.
 */
export async function openEmptyTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.TEST_DATABASE_URL?.trim();
  if (!serverUrl) return { ...(await openDatabase()), databaseUrl: undefined };
  return openServerDatabase(serverUrl, "tc_empty");
}

/** A new database on the server (a clone of `template` when given), dropped by `close()`. */
async function openServerDatabase(
  serverUrl: string,
  prefix: string,
  template?: string,
): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  await adminQuery(serverUrl, `create database "${name}"${template ? ` template "${template}"` : ""}`);
  const databaseUrl = withDatabase(serverUrl, name);
  const handle = await openDatabase({ databaseUrl, maxConnections: 5 });
  return {
    ...handle,
    databaseUrl,
    async close() {
      await handle.close();
      // `with (force)` ends connections a test left behind (a pg-boss pool, a killed child process).
      await adminQuery(serverUrl, `drop database if exists "${name}" with (force)`);
    },
  };
}

export interface TestDataDir {
  /** Use as DATA_DIR / `openDatabase({ dataDir })`: holds a migrated PGlite database in `pgdata/`. */
  dataDir: string;
  cleanup(): Promise<void>;
}

/**
 * A temporary DATA_DIR under `.test-data/` whose `pgdata/` is a copy of the migrated template, for tests that
 * start a child process on a file-backed PGlite. Copying (~0.4 s) and reopening (~0.3 s) beats letting the
 * child run initdb and migrate (~5 s).
 */
export async function createTestDataDir(): Promise<TestDataDir> {
  const template = await ensurePgliteTemplateDir();
  const dataDir = await mkdtemp(path.join(TEST_DATA_DIR, "data-"));
  await cp(path.join(template, "pgdata"), path.join(dataDir, "pgdata"), { recursive: true });
  return { dataDir, cleanup: () => rm(dataDir, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------------------

let templateIdPromise: Promise<string> | undefined;

/** Changes whenever a migration or the PGlite version changes. */
export function templateId(): Promise<string> {
  templateIdPromise ??= (async () => {
    const hash = createHash("sha256");
    hash.update(await pgliteVersion());
    for (const file of await listFiles(MIGRATIONS_FOLDER)) {
      hash.update(path.relative(MIGRATIONS_FOLDER, file)).update(await readFile(file));
    }
    return hash.digest("hex").slice(0, 12);
  })();
  return templateIdPromise;
}

let tarPromise: Promise<string> | undefined;

/** `.test-data/pglite-template-<id>.tar`: a dump of a migrated PGlite database. Built on first use. */
export function ensurePgliteTemplateTar(): Promise<string> {
  tarPromise ??= (async () => {
    const tarPath = path.join(TEST_DATA_DIR, `pglite-template-${await templateId()}.tar`);
    if (await exists(tarPath)) return tarPath;
    await mkdir(TEST_DATA_DIR, { recursive: true });
    await removeStale();
    const handle = await openDatabase({});
    try {
      await handle.migrate();
      const dump = await required(handle.pglite).dumpDataDir("none");
      const temporary = `${tarPath}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
      await writeFile(temporary, new Uint8Array(await dump.arrayBuffer()));
      await rename(temporary, tarPath); // atomic; a concurrent builder's identical file may win, which is fine
    } finally {
      await handle.close();
    }
    return tarPath;
  })();
  return tarPromise;
}

let blobPromise: Promise<Blob> | undefined;

/** The template dump, read once per worker process (~40 MB). */
function pgliteTemplateBlob(): Promise<Blob> {
  blobPromise ??= ensurePgliteTemplateTar().then(async (tarPath) => new Blob([await readFile(tarPath)]));
  return blobPromise;
}

let dirPromise: Promise<string> | undefined;

/** `.test-data/pglite-template-<id>/pgdata`: the template as a file-backed data dir, to copy. */
function ensurePgliteTemplateDir(): Promise<string> {
  dirPromise ??= (async () => {
    const dir = path.join(TEST_DATA_DIR, `pglite-template-${await templateId()}`);
    if (await exists(path.join(dir, "pgdata"))) return dir;
    const temporary = `${dir}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    const handle = await openDatabase({ dataDir: temporary, loadDataDir: await pgliteTemplateBlob() });
    await handle.close();
    try {
      await rename(temporary, dir);
    } catch (error) {
      // Another process renamed its copy into place first.
      await rm(temporary, { recursive: true, force: true });
      if (!(await exists(path.join(dir, "pgdata")))) throw error;
    }
    return dir;
  })();
  return dirPromise;
}

let pgTemplatePromise: Promise<string> | undefined;

/** Ensures `tc_template_<id>` exists on the server and returns its name. */
export function ensurePgTemplate(serverUrl: string): Promise<string> {
  pgTemplatePromise ??= (async () => {
    const name = `tc_template_${await templateId()}`;
    const found = await adminQuery(serverUrl, "select 1 from pg_database where datname = $1", [name]);
    if (found.rowCount) return name;
    const building = `${name}_build_${randomBytes(4).toString("hex")}`;
    await adminQuery(serverUrl, `create database "${building}"`);
    try {
      const handle = await openDatabase({
        databaseUrl: withDatabase(serverUrl, building),
        maxConnections: 1,
      });
      try {
        await handle.migrate();
      } finally {
        await handle.close();
      }
      // Renaming waits for the closed sessions to exit. Then nobody may connect: CREATE DATABASE … TEMPLATE
      // fails while anyone is connected to the template.
      await adminQuery(serverUrl, `alter database "${building}" rename to "${name}"`);
      await adminQuery(serverUrl, `alter database "${name}" with is_template true allow_connections false`);
    } catch (error) {
      await adminQuery(serverUrl, `drop database if exists "${building}" with (force)`);
      // 42P04 duplicate_database: a concurrent run built the same template first.
      if ((error as { code?: string }).code !== "42P04") throw error;
    }
    return name;
  })();
  return pgTemplatePromise;
}

// ---------------------------------------------------------------------------------------------------------

async function adminQuery(serverUrl: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: serverUrl, application_name: "threadcanvas-tests" });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Old templates (other migration sets) and data dirs that crashed runs left behind. */
async function removeStale(): Promise<void> {
  const current = await templateId();
  const now = Date.now();
  for (const entry of await readdir(TEST_DATA_DIR).catch(() => [])) {
    if (entry === `pglite-template-${current}.tar` || entry === `pglite-template-${current}`) continue;
    if (!entry.startsWith("pglite-template-") && !entry.startsWith("data-")) continue;
    const full = path.join(TEST_DATA_DIR, entry);
    const info = await stat(full).catch(() => undefined);
    if (info && now - info.mtimeMs > STALE_MS) await rm(full, { recursive: true, force: true });
  }
}

/** pglite does not export its package.json, so find it above its entry point. */
async function pgliteVersion(): Promise<string> {
  let dir = path.dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
  for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = await readFile(path.join(dir, "package.json"), "utf8").catch(() => undefined);
    if (manifest) return String(JSON.parse(manifest).version);
  }
  throw new Error("cannot find @electric-sql/pglite's package.json");
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

function required<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("expected a PGlite handle");
  return value;
}
