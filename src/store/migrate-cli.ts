/**
 * `npm run db:migrate`: applies `migrations/` to the configured database (DATABASE_URL, or the embedded
 * PGlite under DATA_DIR) and says what it did. Needs no OpenAI key.
 */
import { loadConfig } from "../config.ts";
import { AppError } from "../errors.ts";
import { countAppliedMigrations, MIGRATIONS_FOLDER, openDatabase, redactDatabaseUrl } from "./database.ts";

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const target = config.databaseUrl
    ? `PostgreSQL at ${redactDatabaseUrl(config.databaseUrl)}`
    : `embedded PGlite in ${config.dataDir}`;
  const started = performance.now();
  const handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    const before = await countAppliedMigrations(handle.db);
    await handle.migrate();
    const after = await countAppliedMigrations(handle.db);
    const ms = Math.round(performance.now() - started);
    const applied = after - before;
    console.log(
      applied === 0
        ? `${target}: up to date (${after} migration${after === 1 ? "" : "s"} applied earlier; ${ms} ms)`
        : `${target}: applied ${applied} migration${applied === 1 ? "" : "s"} from ${MIGRATIONS_FOLDER} (${after} in total; ${ms} ms)`,
    );
  } finally {
    await handle.close();
  }
}

main().catch((error: unknown) => {
  // A config problem already names every bad variable; anything else gets its stack for whoever debugs it.
  console.error(error instanceof AppError && error.code === "config_invalid" ? error.message : error);
  process.exitCode = 1;
});
