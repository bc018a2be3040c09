import type { TestProject } from "vitest/node";
import { ensurePgliteTemplateTar, ensurePgTemplate } from "./database.ts";

/**
 * Builds the migrated template database once per run, before any test file opens one (see ./database.ts).
 * A project's `test.env` reaches the workers but not this process's `process.env`, so the backend is read
 * from the project's config.
 */
export default async function setup(project: TestProject): Promise<void> {
  const serverUrl = String(project.config.env?.TEST_DATABASE_URL ?? "").trim();
  const started = performance.now();
  const built = serverUrl ? await ensurePgTemplate(serverUrl) : await ensurePgliteTemplateTar();
  const ms = Math.round(performance.now() - started);
  if (ms > 1000) console.log(`[${project.name}] test database template ready in ${ms} ms: ${built}`);
}
