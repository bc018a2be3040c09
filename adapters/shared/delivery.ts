/**
 * What every chat adapter's delivery does alike: show a turn's progress and then its result on one message,
 * in order, without sending every intermediate state when the platform is slower than the turn.
 */

/**
 * Per turn, the updates to the message showing it, applied one at a time in order: a progress update waiting
 * behind a slow one is replaced by a newer one (only the latest state matters), and the delivery runs after
 * every update before it, so a preview never lands after the result. Progress errors are reported, not thrown.
 */
export class TurnViews {
  readonly #views = new Map<string, TurnView>();
  readonly #onProgressError: (error: unknown, turnId: string) => void;

  constructor(onProgressError: (error: unknown, turnId: string) => void) {
    this.#onProgressError = onProgressError;
  }

  /** Shows progress once the updates before it are done, unless a newer one comes first. */
  update(turnId: string, apply: () => Promise<void>): void {
    this.#view(turnId).update(apply);
  }

  /** Runs the delivery after the updates before it; no progress is shown after it. */
  finish(turnId: string, deliver: () => Promise<void>): Promise<void> {
    return this.#view(turnId)
      .finish(deliver)
      .finally(() => this.#views.delete(turnId));
  }

  #view(turnId: string): TurnView {
    let view = this.#views.get(turnId);
    if (!view) {
      view = new TurnView((error) => this.#onProgressError(error, turnId));
      this.#views.set(turnId, view);
      // Turns delivered by another process never finish here.
      if (this.#views.size > 1000) this.#views.delete(this.#views.keys().next().value as string);
    }
    return view;
  }
}

class TurnView {
  #chain: Promise<void> = Promise.resolve();
  #pending: (() => Promise<void>) | null = null;
  #finished = false;
  readonly #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  update(apply: () => Promise<void>): void {
    if (this.#finished) return;
    const scheduled = this.#pending !== null;
    this.#pending = apply;
    if (scheduled) return;
    this.#chain = this.#chain.then(async () => {
      const next = this.#pending;
      this.#pending = null;
      await next?.().catch(this.#onError);
    });
  }

  finish(deliver: () => Promise<void>): Promise<void> {
    this.#finished = true;
    const run = this.#chain.then(deliver);
    this.#chain = run.catch(() => {});
    return run;
  }
}
