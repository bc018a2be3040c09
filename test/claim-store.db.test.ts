import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { Once } from "../adapters/shared/once.ts";
import { PostgresClaims } from "../src/store/claim-store.ts";
import { type DbHandle, openDatabase } from "../src/store/database.ts";
import { claims as claimsTable } from "../src/store/schema.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";

/**
 * Claims, on PGlite and (project `pg`) on PostgreSQL: what an adapter does once per thread or turn is done by
 * exactly one process, however many ask at once, and taken over only once its holder's claim has expired.
 */

let h: TestDatabase;
let claims: PostgresClaims;

beforeAll(async () => {
  h = await openTestDatabase();
  claims = new PostgresClaims(h.db);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(async () => {
  await h.db.delete(claimsTable);
});

/** Moves every claim's expiry (and creation) `ms` into the past, as if that long had gone by. */
const age = (ms: number) =>
  h.db.execute(
    sql`update claims set expires_at = expires_at - ${ms}::int * interval '1 millisecond',
        created_at = created_at - ${ms}::int * interval '1 millisecond'`,
  );

describe("PostgresClaims", () => {
  test("the first claimer holds it; the others see it held, then done with what was made", async () => {
    expect(await claims.claim("k", "a", 60_000)).toEqual({ state: "taken", tookOver: false });
    const held = await claims.claim("k", "b", 60_000);
    expect(held.state).toBe("held");
    expect(await claims.readClaim("k")).toMatchObject({ state: "held" });
    await claims.settleClaim("k", "a", "1700000000.000100");
    expect(await claims.claim("k", "b", 60_000)).toEqual({ state: "done", ref: "1700000000.000100" });
    expect(await claims.readClaim("k")).toEqual({ state: "done", ref: "1700000000.000100" });
    expect(await claims.readClaim("other")).toBeNull();
  });

  test("an expired claim is taken over, and its old holder can no longer settle, renew or release it", async () => {
    await claims.claim("k", "dead", 60_000);
    await age(61_000);
    expect(await claims.readClaim("k")).toBeNull();
    expect(await claims.claim("k", "next", 60_000)).toEqual({ state: "taken", tookOver: true });
    expect(await claims.renewClaim("k", "dead", 60_000)).toBe(false);
    await claims.settleClaim("k", "dead", "late");
    await claims.releaseClaim("k", "dead");
    expect(await claims.readClaim("k")).toMatchObject({ state: "held" });
    await claims.settleClaim("k", "next", "mine");
    expect(await claims.readClaim("k")).toEqual({ state: "done", ref: "mine" });
  });

  test("a done claim is never taken over, however old", async () => {
    await claims.claim("k", "a", 1_000);
    await claims.settleClaim("k", "a", "made");
    await age(3_600_000);
    expect(await claims.claim("k", "b", 60_000)).toEqual({ state: "done", ref: "made" });
  });

  test("renewing keeps a claim past its first expiry; releasing frees it at once", async () => {
    await claims.claim("k", "a", 60_000);
    await age(50_000);
    expect(await claims.renewClaim("k", "a", 60_000)).toBe(true);
    await age(50_000);
    expect((await claims.claim("k", "b", 60_000)).state).toBe("held");
    await claims.releaseClaim("k", "a");
    expect(await claims.claim("k", "b", 60_000)).toEqual({ state: "taken", tookOver: false });
  });

  test("of 40 processes claiming at once, one wins", async () => {
    // Two pools on PostgreSQL, so the claims really race on the server; one handle on PGlite.
    const second: DbHandle | null = h.databaseUrl ? await openDatabase({ databaseUrl: h.databaseUrl }) : null;
    try {
      const stores = [claims, new PostgresClaims(second?.db ?? h.db)];
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => stores[i % 2]?.claim("race", `p${i}`, 60_000)),
      );
      expect(results.filter((r) => r?.state === "taken")).toHaveLength(1);
      expect(results.filter((r) => r?.state === "held")).toHaveLength(39);
    } finally {
      await second?.close();
    }
  });

  test("pruning drops claims older than the given time", async () => {
    await claims.claim("old", "a", 60_000);
    await claims.settleClaim("old", "a", "x");
    await age(2 * 86_400_000);
    await claims.claim("new", "a", 60_000);
    expect(await claims.pruneClaims(new Date(Date.now() - 86_400_000))).toBe(1);
    expect(await claims.readClaim("old")).toBeNull();
    expect(await claims.readClaim("new")).toMatchObject({ state: "held" });
  });
});

describe("Once", () => {
  test("twenty callers at once: the work is done once and all get what it made", async () => {
    const once = new Once(claims, { pollMs: 10 });
    let made = 0;
    const make = async () => {
      made += 1;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return `ts-${made}`;
    };
    const refs = await Promise.all(Array.from({ length: 20 }, () => once.run("root", make)));
    expect(made).toBe(1);
    expect(new Set(refs)).toEqual(new Set(["ts-1"]));
  });

  test("work that fails gives the claim back: the next caller does it without waiting", async () => {
    const once = new Once(claims, { ttlMs: 60_000, pollMs: 10 });
    await expect(
      once.run("k", async () => {
        throw new Error("Slack said no");
      }),
    ).rejects.toThrow("Slack said no");
    const started = Date.now();
    expect(await once.run("k", async () => "second")).toBe("second");
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  test("a holder that died is taken over once its claim expires, looking first for what it made", async () => {
    await claims.claim("k", "dead", 300);
    const once = new Once(claims, { ttlMs: 5_000, pollMs: 20 });
    const looked: string[] = [];
    const ref = await once.run(
      "k",
      async () => "posted again",
      async () => {
        looked.push("find");
        return "found";
      },
    );
    expect(ref).toBe("found");
    expect(looked).toEqual(["find"]);
    expect(await claims.readClaim("k")).toEqual({ state: "done", ref: "found" });
  });

  test("result waits for another process's work, and is null when nobody is doing it", async () => {
    const once = new Once(claims, { pollMs: 10 });
    expect(await once.result("k", 1_000)).toBeNull();
    await claims.claim("k", "other", 60_000);
    setTimeout(() => void claims.settleClaim("k", "other", "made elsewhere"), 100);
    expect(await once.result("k", 10_000)).toBe("made elsewhere");
  });
});
