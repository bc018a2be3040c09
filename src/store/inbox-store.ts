import { and, asc, eq, gt, inArray, isNull, lt, lte, sql } from "drizzle-orm";
import type { Platform } from "../domain.ts";
import type { Inbox, InboxEntry, InboxEvent } from "../ports.ts";
import type { Db } from "./database.ts";
import { type InboxRow, inbox } from "./schema.ts";

/** The inbox on PostgreSQL or PGlite, through drizzle. Each call is one statement. */
export class PostgresInbox implements Inbox {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async receive(event: InboxEvent, holdMs: number): Promise<InboxEntry | null> {
    const [row] = await this.#db
      .insert(inbox)
      .values({
        platform: event.platform,
        key: event.key,
        kind: event.kind,
        payload: event.payload,
        claimedUntil: sql`now() + ${holdMs}::int * interval '1 millisecond'`,
      })
      .onConflictDoNothing({ target: inbox.key })
      .returning();
    return row ? toEntry(row) : null;
  }

  async takeLapsed(platform: Platform, holdMs: number, limit: number): Promise<InboxEntry[]> {
    const lapsed = this.#db
      .select({ id: inbox.id })
      .from(inbox)
      .where(and(isNull(inbox.finishedAt), eq(inbox.platform, platform), lte(inbox.claimedUntil, sql`now()`)))
      .orderBy(asc(inbox.id))
      .limit(limit)
      .for("update", { skipLocked: true });
    const rows = await this.#db
      .update(inbox)
      .set({
        claimedUntil: sql`now() + ${holdMs}::int * interval '1 millisecond'`,
        attempts: sql`${inbox.attempts} + 1`,
      })
      .where(inArray(inbox.id, lapsed))
      .returning();
    return rows.map(toEntry).sort((a, b) => a.id - b.id);
  }

  async finish(id: number, outcome: "done" | "gave_up"): Promise<void> {
    await this.#db
      .update(inbox)
      .set({ finishedAt: sql`now()`, outcome, payload: null })
      .where(and(eq(inbox.id, id), isNull(inbox.finishedAt)));
  }

  async park(id: number): Promise<void> {
    await this.#db
      .update(inbox)
      .set({ finishedAt: sql`now()`, outcome: "waiting" })
      .where(and(eq(inbox.id, id), isNull(inbox.finishedAt)));
  }

  async resume(id: number, holdMs: number, answerWithinMs: number): Promise<InboxEntry | null> {
    // One statement: of two clicks on "Draw it", one resumes the event and the other finds it answered.
    const [row] = await this.#db
      .update(inbox)
      .set({
        finishedAt: null,
        outcome: null,
        claimedUntil: sql`now() + ${holdMs}::int * interval '1 millisecond'`,
        attempts: sql`${inbox.attempts} + 1`,
        payload: sql`${inbox.payload} || '{"confirmed": true}'::jsonb`,
      })
      .where(
        and(
          eq(inbox.id, id),
          eq(inbox.outcome, "waiting"),
          gt(inbox.finishedAt, sql`now() - ${answerWithinMs}::int * interval '1 millisecond'`),
        ),
      )
      .returning();
    return row ? toEntry(row) : null;
  }

  async decline(id: number): Promise<boolean> {
    const rows = await this.#db
      .update(inbox)
      .set({ outcome: "declined", payload: null })
      .where(and(eq(inbox.id, id), eq(inbox.outcome, "waiting")))
      .returning({ id: inbox.id });
    return rows.length > 0;
  }

  async prune(before: Date): Promise<number> {
    const rows = await this.#db.delete(inbox).where(lt(inbox.finishedAt, before)).returning({ id: inbox.id });
    return rows.length;
  }
}

function toEntry(row: InboxRow): InboxEntry {
  return {
    id: row.id,
    platform: row.platform,
    key: row.key,
    kind: row.kind,
    payload: row.payload,
    attempts: row.attempts,
    receivedAt: row.receivedAt,
  };
}
