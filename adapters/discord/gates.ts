import type { Turn } from "../../src/domain.ts";

/**
 * Per event (idempotency key), a gate that opens once the event is worked from the inbox — its turn recorded,
 * its status message posted, its reply's id kept: the turn's progress and delivery wait for it, so nothing
 * edits a message Discord has not created yet, or posts a second status. A replay
 * of the event arriving meanwhile waits for the first one's gate too.
 */
export class AcknowledgementGates {
  readonly #gates = new Map<string, { promise: Promise<void> }>();

  open(key: string): { open: () => void } {
    let open: () => void = () => {};
    const own = new Promise<void>((resolve) => {
      open = resolve;
    });
    const earlier = this.#gates.get(key)?.promise;
    const promise = earlier ? Promise.all([earlier, own]).then(() => {}) : own;
    this.#gates.set(key, { promise });
    return {
      open: () => {
        open();
        setTimeout(() => {
          if (this.#gates.get(key)?.promise === promise) this.#gates.delete(key);
        }, 60_000).unref();
      },
    };
  }

  /** Waits until the event that made this turn was acknowledged here (it is already, in another process). */
  async passed(turn: Turn): Promise<void> {
    const gate = turn.idempotencyKey ? this.#gates.get(turn.idempotencyKey) : undefined;
    if (gate)
      await Promise.race([gate.promise, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  }
}
