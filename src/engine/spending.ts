import { type ImageParams, type Platform, platformOf, type Turn, type TurnKind } from "../domain.ts";
import { AppError } from "../errors.ts";
import type { WorkMetrics } from "../metrics.ts";
import type { BudgetCap, CallLedger, Intent, LedgerStore } from "../ports.ts";
import { estimateTurnUsd } from "../provider/pricing.ts";
import { usd } from "../words.ts";

/**
 * The engine's money rules in one place: what a turn is expected to cost, which limits it is recorded under,
 * when the person is asked first, and how each provider request is charged to the turn. The store enforces the
 * limits (in the transaction that records the turn); these functions only decide which apply.
 */

/** The turns that call the provider: what costs money, and what limits and budgets count. */
export const DRAWING_KINDS: readonly TurnKind[] = ["generate", "edit", "variation"];

export interface SpendingRules {
  /** Drawing turns one person may start in a rolling hour (`RATE_USER_PER_HOUR`); null: no limit. */
  turnsPerUserHour: number | null;
  /** Spend caps every drawing turn is reserved against (`BUDGET_*`). */
  budgets: readonly BudgetCap[];
  /** Above this estimate the person is asked first (`CONFIRM_ABOVE_USD`); null: never. */
  confirmAboveUsd: number | null;
  /** The models the provider calls, to price a turn. */
  models: { image: string; think: string };
  /** People no limit applies to (`ADMIN_USERS`). */
  unlimited(platform: Platform, userId: string): boolean;
}

/** What a valid intent will cost at today's prices; 0 for turns that call no model (undo, select). */
export function turnEstimate(
  kind: TurnKind,
  request: { prompt: string; params: ImageParams; inputs: readonly { width: number; height: number }[] },
  rules: Pick<SpendingRules, "models">,
): number {
  if (!DRAWING_KINDS.includes(kind)) return 0;
  return estimateTurnUsd({
    params: request.params,
    promptChars: request.prompt.length,
    inputs: request.inputs,
    imageModel: rules.models.image,
    thinkModel: rules.models.think,
  });
}

/** Throws `confirmation_needed` ("Draw it for about $X?") when the estimate is above the threshold. */
export function askIfCostly(
  intent: Intent,
  estimateUsd: number,
  rules: Pick<SpendingRules, "confirmAboveUsd">,
) {
  const askAbove = rules.confirmAboveUsd;
  if (askAbove === null || intent.confirmed || estimateUsd <= askAbove) return;
  throw new AppError("confirmation_needed", `estimate ${estimateUsd} is above ${askAbove}`, {
    userMessage: `Draw it for about ${usd(estimateUsd)}?`,
  });
}

/** The limits an intent is recorded under: drawing turns of people who are not admins. */
export function limitsFor(
  intent: Intent,
  platform: Platform,
  rules: SpendingRules,
): { hourlyLimit?: number; budgets?: readonly BudgetCap[] } {
  if (!DRAWING_KINDS.includes(intent.kind) || rules.unlimited(platform, intent.userId)) return {};
  const limit = rules.turnsPerUserHour;
  return { ...(limit ? { hourlyLimit: limit } : {}), budgets: rules.budgets };
}

/**
 * The turn's side of the bill: every request the provider sends for it is a ledger row charged to it. As each
 * settles, `metrics` counts what the row now costs (the same sum `settleCall` stores; an unanswered request at
 * its estimate), so `/metrics` has the spend without summing the ledger.
 */
export function ledgerFor(turn: Turn, store: LedgerStore, metrics?: Pick<WorkMetrics, "spent">): CallLedger {
  // A think turn sends one request per image: one that never answered may cost its share of the estimate.
  const share = turn.params.think ? turn.estimateUsd / turn.params.n : turn.estimateUsd;
  const estimateUsd = Math.ceil(share * 1e6) / 1e6;
  return {
    open: (request) => store.openCall({ ...request, turnId: turn.id, estimateUsd }),
    settle: async (clientRequestId, outcome) => {
      await store.settleCall(clientRequestId, outcome);
      const cost =
        outcome.status === "billed"
          ? Math.round(outcome.usage.reduce((sum, entry) => sum + entry.costUsd, 0) * 1e6) / 1e6
          : outcome.status === "unknown"
            ? estimateUsd
            : 0;
      metrics?.spent(platformOf(turn.threadKey), cost);
    },
  };
}
