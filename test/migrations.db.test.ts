import { randomUUID } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "drizzle-orm";
import { afterEach, beforeEach, expect, test } from "vitest";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { type DbHandle, MIGRATIONS_FOLDER } from "../src/store/database.ts";
import { openEmptyTestDatabase, type TestDatabase } from "./support/database.ts";

/**
 * Migrations that move data, run from the schema before them: the database is migrated up to the previous
 * migration, given rows as the code of that time wrote them, then migrated the rest of the way.
 */

let h: TestDatabase;
beforeEach(async () => {
  h = await openEmptyTestDatabase();
});
afterEach(async () => {
  await h?.close();
});

/** Applies the migrations up to and including `tag`, as drizzle would have at the time. */
async function migrateUpTo(handle: DbHandle, tag: string): Promise<void> {
  const folder = await mkdtemp(path.join(tmpdir(), "tc-migrations-"));
  try {
    await cp(MIGRATIONS_FOLDER, folder, { recursive: true });
    const journalFile = path.join(folder, "meta", "_journal.json");
    const journal = JSON.parse(await readFile(journalFile, "utf8")) as { entries: Array<{ tag: string }> };
    const last = journal.entries.findIndex((entry) => entry.tag === tag);
    expect(last).toBeGreaterThanOrEqual(0);
    journal.entries = journal.entries.slice(0, last + 1);
    await writeFile(journalFile, JSON.stringify(journal));
    await handle.migrate(folder);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

test("0003 moves the status messages kept in threads.meta to turn_messages, one row per turn", async () => {
  await migrateUpTo(h, "0002_thread_aliases");
  const [slack, discord, quiet] = ["slack:T1:C1:cmd-1", "discord:G1:C1:i-1", "console:me:1"];
  const [first, second, third] = [randomUUID(), randomUUID(), randomUUID()];
  const gone = randomUUID(); // a status key whose turn no longer exists
  const metaOf = {
    [slack]: { team: "T1", channel: "C1", rootTs: "1712.0001", [`status:${first}`]: "1712.0002" },
    [discord]: {
      guildId: "G1",
      channelId: "C1",
      threadId: "TH1",
      [`status:${second}`]: "TH1/M2",
      [`status:${third}`]: "TH1/M3",
      [`status:${gone}`]: "TH1/M9",
    },
    [quiet]: { note: "no status keys" },
  };
  for (const [key, meta] of Object.entries(metaOf)) {
    await h.db.execute(sql`insert into threads (key, platform, created_by, meta)
      values (${key}, ${key.split(":")[0]}, 'U1', ${JSON.stringify(meta)}::jsonb)`);
  }
  for (const [id, key, seq] of [
    [first, slack, 1],
    [second, discord, 1],
    [third, discord, 2],
  ] as const) {
    await h.db.execute(sql`insert into turns (id, thread_key, seq, kind, prompt, params, user_id)
      values (${id}, ${key}, ${seq}, 'generate', 'a fox', '{}'::jsonb, 'U1')`);
  }

  await h.migrate();

  const store = new PostgresConversationStore(h.db);
  expect(await store.turnMessage(first, "status")).toBe("1712.0002");
  expect(await store.turnMessage(second, "status")).toBe("TH1/M2");
  expect(await store.turnMessage(third, "status")).toBe("TH1/M3");
  const rows = await h.db.execute<{ n: number }>(sql`select count(*)::int as n from turn_messages`);
  expect(rows.rows[0]?.n).toBe(3);
  expect((await store.getThread(slack))?.meta).toEqual({ team: "T1", channel: "C1", rootTs: "1712.0001" });
  expect((await store.getThread(discord))?.meta).toEqual({ guildId: "G1", channelId: "C1", threadId: "TH1" });
  expect((await store.getThread(quiet))?.meta).toEqual({ note: "no status keys" });
});
