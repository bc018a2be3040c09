import type { UsageEntry } from "../../src/domain.ts";
import {
  type ImageTokenUsage,
  imageUsageCounts,
  pricedEntry,
  reasoningUsageCounts,
} from "../../src/provider/pricing.ts";
import type { RecordedRequest } from "../fakes/openai-server.ts";

/** What the fake OpenAI billed for a request, priced as the provider prices usage (to the millionth). */
export function fakeCharge(request: RecordedRequest): number {
  const entries: UsageEntry[] = request.bills.map((bill) =>
    pricedEntry(
      bill.model,
      bill.kind === "image"
        ? imageUsageCounts([bill.usage as unknown as ImageTokenUsage])
        : reasoningUsageCounts(bill.usage as unknown as Parameters<typeof reasoningUsageCounts>[0]),
    ),
  );
  return roundUsd(entries.reduce((sum, e) => sum + e.costUsd, 0));
}

export const roundUsd = (amount: number) => Math.round(amount * 1e6) / 1e6;
