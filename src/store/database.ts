import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { PGlite } from "@electric-sql/pglite";
import { type Assume, type ExtractTablesWithRelations, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from "drizzle-orm/pg-core";
import type { SqlExecutor } from "../ports.ts";
import * as schema from "./schema.ts";

export type Schema = typeof schema;

/**
 * A result type that both drivers' results satisfy (pg's `QueryResult<T>` and PGlite's `Results<T>` both have
 * `rows`). With drizzle's base `PgQueryResultHKT` the drivers still assign to `Db`, but `db.execute()` returns
 * `unknown`. (`this` is not allowed in an inline object type, hence the alias.)
 */
type RowsOf<T> = { rows: T[] };
export interface RowsResultHKT extends PgQueryResultHKT {
  type: RowsOf<Assume<this["row"], Record<string, unknown>>>;
}

/** The database as shared query code sees it: `NodePgDatabase<Schema>` and `PgliteDatabase<Schema>` both assign. */
export type Db = PgDatabase<RowsResultHKT, Schema>;
export type Tx = PgTransaction<RowsResultHKT, Schema, ExtractTablesWithRelations<Schema>>;

export interface DbHandle {
  db: Db;
  kind: "pg" | "pglite";
  /** The embedded instance, for pg-boss's `fromPglite` (one connection, shared by drizzle and the queue). */
  pglite?: PGlite;
  /** The server's URL, for pg-boss's own pool and for child processes. */
  url?: string;
  /** PGlite's data directory (`<dataDir>/pgdata`); undefined for in-memory PGlite and for pg. */
  pgdataDir?: string;
  /**
   * Applies the migrations in `migrations/` (or another folder of drizzle-kit's making: tests apply a prefix of
   * them) that this database has not seen; a no-op when it is up to date.
   */
  migrate(migrationsFolder?: string): Promise<void>;
  /** Ends the pool or shuts PGlite down cleanly. Safe to call twice. */
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** `postgres://…`: use that server through a `pg` Pool. Unset: embedded PGlite. */
  databaseUrl?: string;
  /** Where PGlite keeps its files (`<dataDir>/pgdata`); undefined means in memory. Ignored for pg. */
  dataDir?: string;
  /** A `dumpDataDir()` tarball to start PGlite from instead of running initdb (~0.5 s instead of ~5 s). */
  loadDataDir?: Blob;
  /** pg only: pool size (default 10). */
  maxConnections?: number;
  /** pg only: an idle pooled connection failed (server restart, network). Without a handler pg would crash the process. */
  onPoolError?: (error: Error) => void;
}

/** The folder drizzle-kit generates into, found from this file rather than the working directory. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../migrations", import.meta.url));

export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<DbHandle> {
  return options.databaseUrl ? openPostgres(options.databaseUrl, options) : openPglite(options);
}

async function openPostgres(url: string, options: OpenDatabaseOptions): Promise<DbHandle> {
  const { default: pg } = await import("pg");
  const { drizzle } = await import("drizzle-orm/node-postgres");
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    application_name: "threadcanvas",
  });
  pool.on("error", options.onPoolError ?? ((error) => process.emitWarning(error)));
  const db = drizzle({ client: pool, schema });
  let closed = false;
  return {
    db,
    kind: "pg",
    url,
    migrate: (folder = MIGRATIONS_FOLDER) => migratePostgres(url, folder),
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}

/**
 * Several processes may start at once against one server (the bot and separate workers). drizzle's migrator
 * does not lock, so two of them could apply the same migration; a session advisory lock on a dedicated
 * connection makes them take turns, and the second finds nothing left to do.
 */
async function migratePostgres(url: string, migrationsFolder: string): Promise<void> {
  const { default: pg } = await import("pg");
  const { drizzle } = await import("drizzle-orm/node-postgres");
  const { migrate } = await import("drizzle-orm/node-postgres/migrator");
  const client = new pg.Client({ connectionString: url, application_name: "threadcanvas-migrate" });
  await client.connect();
  try {
    await client.query("select pg_advisory_lock(hashtext('threadcanvas'), hashtext('migrate'))");
    await migrate(drizzle({ client, schema }), { migrationsFolder });
  } finally {
    // Ending the session releases the lock even if the unlock is never reached.
    await client.end();
  }
}

async function openPglite(options: OpenDatabaseOptions): Promise<DbHandle> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { drizzle } = await import("drizzle-orm/pglite");
  const { migrate } = await import("drizzle-orm/pglite/migrator");
  let pgdataDir: string | undefined;
  if (options.dataDir !== undefined) {
    // PGlite creates only the last path component; the parent must exist.
    await mkdir(options.dataDir, { recursive: true });
    pgdataDir = path.join(path.resolve(options.dataDir), "pgdata");
  }
  const client = await PGlite.create({
    ...(pgdataDir === undefined ? {} : { dataDir: pgdataDir }),
    ...(options.loadDataDir === undefined ? {} : { loadDataDir: options.loadDataDir }),
  });
  yieldBetweenQueries(client);
  const db = drizzle({ client, schema });
  return {
    db,
    kind: "pglite",
    pglite: client,
    ...(pgdataDir === undefined ? {} : { pgdataDir }),
    // One process owns a PGlite database, so there is nothing to race against here.
    migrate: (migrationsFolder = MIGRATIONS_FOLDER) => migrate(db, { migrationsFolder }),
    async close() {
      if (!client.closed) await client.close();
    },
  };
}

/**
 * PGlite runs each statement synchronously on this thread, and its lock hands over to the next waiting statement
 * in a microtask, so a queue of statements (a burst of 100 commands is ~1,000) runs back to back without the
 * event loop ever turning: no timer fires and no socket is read until the queue is empty. A chat platform that
 * waits for its acknowledgement meanwhile gives up after 3 s. Yielding once (setImmediate) inside the lock,
 * before each statement, lets timers and I/O run between statements; it costs a few microseconds each, and
 * statements still run one at a time in arrival order. `_runExclusiveQuery` is the lock every statement takes,
 * in and out of transactions (PGlite 0.5); if a later PGlite renames it, this does nothing and says so.
 */
function yieldBetweenQueries(client: PGlite): void {
  const lockable = client as unknown as {
    _runExclusiveQuery?: <T>(run: () => Promise<T>) => Promise<T>;
  };
  const runExclusive = lockable._runExclusiveQuery?.bind(client);
  if (!runExclusive) {
    process.emitWarning("PGlite has no _runExclusiveQuery: statements will not yield to the event loop");
    return;
  }
  lockable._runExclusiveQuery = <T>(run: () => Promise<T>) =>
    runExclusive(async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      return run();
    });
}

/**
 * Raw SQL with `$1`, `$2` … placeholders, run by a drizzle transaction (or the database): how the queue writes a
 * turn's job in the transaction that records the turn. Each placeholder becomes a bound parameter (a repeated
 * one is bound again), so no value is ever written into the SQL text. Both drivers bind arrays and JSON as
 * PostgreSQL expects. Placeholders are not looked for inside quoted literals: the SQL it runs (pg-boss's) has
 * none there.
 */
export function sqlExecutor(db: Db | Tx): SqlExecutor {
  return {
    async executeSql(text, values = []) {
      const chunks = text
        .split(/\$(\d+)/)
        .map((part, i) => (i % 2 === 0 ? sql.raw(part) : sql.param(values[Number(part) - 1])));
      return { rows: (await db.execute(sql.join(chunks))).rows };
    },
  };
}

/** How many migrations drizzle has recorded as applied (0 for a database it has never migrated). */
export async function countAppliedMigrations(db: Db): Promise<number> {
  const [row] = (
    await db.execute<{ exists: boolean }>(
      sql`select to_regclass('drizzle.__drizzle_migrations') is not null as "exists"`,
    )
  ).rows;
  if (!row?.exists) return 0;
  const [count] = (
    await db.execute<{ n: number }>(sql`select count(*)::int as n from drizzle.__drizzle_migrations`)
  ).rows;
  return count?.n ?? 0;
}

/** A database URL fit for logs: the password is replaced. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "postgres://…";
  }
}
