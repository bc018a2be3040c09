/**
 * Chat platforms want an answer within 3 s. The adapters record a request first and acknowledge after, so
 * nothing acknowledged is lost; these two helpers let them stop waiting for the recording when it runs long
 * (a burst on the embedded database, a slow download) and acknowledge anyway, finishing the recording behind it.
 */

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The promise's outcome as a value, so it can be awaited more than once and never rejects unobserved. */
export function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** The settled outcome, or null when it takes longer than `ms`. */
export async function withDeadline<T>(promise: Promise<Settled<T>>, ms: number): Promise<Settled<T> | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** How long an adapter waits for a request to be recorded before it acknowledges anyway (platforms allow 3 s). */
export const ACK_GUARD_MS = 2000;
