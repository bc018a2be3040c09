/**
 * Named points at which the process can be made to die on the spot (SIGKILL, as `kill -9` or a lost machine
 * would), to prove what survives a crash exactly there. The crash tests set
 * `THREADCANVAS_KILL_AT=<point>[,<point>…]` on a bot they start; unset (always, in production), `killPoint` does
 * nothing. Every point is named in the README's guarantees.
 *
 * A point can be narrowed to one kind of event: `inbox:recorded:message` kills at `inbox:recorded` only for a
 * message, so a test can first make a thread and then die on the reply to it.
 */
const armed = new Set(
  (process.env.THREADCANVAS_KILL_AT ?? "")
    .split(",")
    .map((point) => point.trim())
    .filter(Boolean),
);

export function killPoint(point: string, kind?: string): void {
  if (armed.size === 0) return;
  if (armed.has(point) || (kind !== undefined && armed.has(`${point}:${kind}`)))
    process.kill(process.pid, "SIGKILL");
}
