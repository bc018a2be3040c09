import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClaimStore } from "../../src/ports.ts";

export interface OnceOptions {
  /** How long a claim lasts without renewal: how long the others wait before taking over from a dead holder. */
  ttlMs?: number;
  /** How often a waiting process looks again. */
  pollMs?: number;
}

/**
 * Exactly once across processes, for what an adapter does once per thread or turn: the first process to claim
 * the key does the work (renewing its claim meanwhile) and records what it made; every other process waits for
 * that and uses it. A holder that dies is taken over once its claim expires, and the new holder first looks for
 * what the dead one may have made.
 */
export class Once {
  readonly #claims: ClaimStore;
  readonly #ttlMs: number;
  readonly #pollMs: number;

  constructor(claims: ClaimStore, options: OnceOptions = {}) {
    this.#claims = claims;
    this.#ttlMs = options.ttlMs ?? 15_000;
    this.#pollMs = options.pollMs ?? 150;
  }

  /**
   * What `make` made for `key`, made here if no process has made it or is making it. `find` looks for the
   * result of a holder that died before recording it (on the platform, e.g. by message metadata).
   */
  async run(
    key: string,
    make: () => Promise<string>,
    find?: () => Promise<string | undefined>,
  ): Promise<string> {
    const holder = `${hostname()}:${process.pid}:${randomUUID()}`;
    for (;;) {
      const claim = await this.#claims.claim(key, holder, this.#ttlMs);
      if (claim.state === "done") return claim.ref;
      if (claim.state === "taken") return this.#make(key, holder, claim.tookOver ? find : undefined, make);
      const made = await this.result(key, this.#ttlMs + this.#pollMs);
      if (made !== null) return made;
      // Released or expired: claim it again (the loop ends when it is done here or elsewhere).
    }
  }

  /**
   * What was made for `key`, waiting up to `waitMs` while another process is making it; null when nobody holds
   * the claim (never claimed, released, expired) or the wait ran out.
   */
  async result(key: string, waitMs: number): Promise<string | null> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const claim = await this.#claims.readClaim(key);
      if (claim === null) return null;
      if (claim.state === "done") return claim.ref;
      if (Date.now() >= deadline) return null;
      await sleep(this.#pollMs);
    }
  }

  async #make(
    key: string,
    holder: string,
    find: (() => Promise<string | undefined>) | undefined,
    make: () => Promise<string>,
  ): Promise<string> {
    // Renewed at a third of its life, so a slow platform (rate limits waited out) does not let others take over.
    const renewing = setInterval(() => {
      this.#claims.renewClaim(key, holder, this.#ttlMs).catch(() => {});
    }, this.#ttlMs / 3);
    try {
      const ref = (await find?.()) ?? (await make());
      await this.#claims.settleClaim(key, holder, ref);
      return ref;
    } catch (error) {
      await this.#claims.releaseClaim(key, holder).catch(() => {});
      throw error;
    } finally {
      clearInterval(renewing);
    }
  }
}
