import { configDefaults, defineConfig } from "vitest/config";

/**
 * Two projects. `pglite` runs every test on the embedded database. `pg` runs the database-backed suites
 * (`*.db.test.ts`) again against a real PostgreSQL server, when TEST_DATABASE_URL names one (.ci/run sets it);
 * each test file creates and drops its own database there. `*.pg.test.ts` run there only: several processes
 * sharing one database, which an embedded PGlite cannot be.
 */
const serverUrl = process.env.TEST_DATABASE_URL?.trim() ?? "";
if (!serverUrl) {
  console.log(
    "[vitest] TEST_DATABASE_URL is not set: running on PGlite only. " +
      "Set it (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run the database suites on PostgreSQL too.",
  );
}

const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
  pool: "forks" as const,
  // Two files at once even on a 2-core machine (vitest's default there is one): most of the long files wait on
  // child processes and timers, not on the CPU. Set VITEST_MAX_WORKERS=1 to run them one by one.
  maxWorkers: Number(process.env.VITEST_MAX_WORKERS) || 2,
  // Builds the migrated template database that test/support/database.ts clones for each test file.
  globalSetup: ["test/support/global-setup.ts"],
};

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          ...shared,
          name: "pglite",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, "test/**/*.pg.test.ts"],
          env: { TEST_DATABASE_URL: "" },
        },
      },
      ...(serverUrl
        ? [
            {
              test: {
                ...shared,
                name: "pg",
                include: ["test/**/*.db.test.ts", "test/**/*.pg.test.ts"],
                env: { TEST_DATABASE_URL: serverUrl },
              },
            },
          ]
        : []),
    ],
  },
});
