import { and, eq, isNull, lt, sql } from "drizzle-orm";
import type { Claim, ClaimStore } from "../ports.ts";
import type { Db } from "./database.ts";
import { claims } from "./schema.ts";

const expiresIn = (ttlMs: number) => sql`now() + ${ttlMs}::int * interval '1 millisecond'`;

/** Claims on PostgreSQL or PGlite. Taking one is a single statement, so two processes cannot both win it. */
export class PostgresClaims implements ClaimStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async claim(key: string, holder: string, ttlMs: number): Promise<Claim> {
    // Inserted, or taken over from a holder whose claim expired unsettled. `xmax` is 0 on a freshly inserted
    // row and the updating transaction's id on an updated one: it tells the two apart in the same statement.
    const [won] = await this.#db
      .insert(claims)
      .values({ key, holder, expiresAt: expiresIn(ttlMs) })
      .onConflictDoUpdate({
        target: claims.key,
        set: { holder, expiresAt: expiresIn(ttlMs) },
        setWhere: and(isNull(claims.ref), lt(claims.expiresAt, sql`now()`)),
      })
      .returning({ tookOver: sql<boolean>`(xmax::text <> '0')` });
    if (won) return { state: "taken", tookOver: won.tookOver };
    return (await this.readClaim(key)) ?? { state: "held", until: new Date() };
  }

  async renewClaim(key: string, holder: string, ttlMs: number): Promise<boolean> {
    const renewed = await this.#db
      .update(claims)
      .set({ expiresAt: expiresIn(ttlMs) })
      .where(and(eq(claims.key, key), eq(claims.holder, holder), isNull(claims.ref)))
      .returning({ key: claims.key });
    return renewed.length > 0;
  }

  async settleClaim(key: string, holder: string, ref: string): Promise<void> {
    // By key and holder only: a holder that was slow past its expiry still records what it made, unless
    // someone else has taken the claim over since (then theirs counts, and they looked for this one first).
    await this.#db
      .update(claims)
      .set({ ref })
      .where(and(eq(claims.key, key), eq(claims.holder, holder), isNull(claims.ref)));
  }

  async releaseClaim(key: string, holder: string): Promise<void> {
    await this.#db
      .delete(claims)
      .where(and(eq(claims.key, key), eq(claims.holder, holder), isNull(claims.ref)));
  }

  async readClaim(key: string): Promise<Exclude<Claim, { state: "taken" }> | null> {
    const [row] = await this.#db
      .select({
        ref: claims.ref,
        expiresAt: claims.expiresAt,
        expired: sql<boolean>`${claims.expiresAt} < now()`,
      })
      .from(claims)
      .where(eq(claims.key, key));
    if (!row) return null;
    if (row.ref !== null) return { state: "done", ref: row.ref };
    return row.expired ? null : { state: "held", until: row.expiresAt };
  }

  async pruneClaims(before: Date): Promise<number> {
    const pruned = await this.#db
      .delete(claims)
      .where(lt(claims.createdAt, before))
      .returning({ key: claims.key });
    return pruned.length;
  }
}
