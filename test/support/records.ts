import { randomUUID } from "node:crypto";
import { DEFAULT_PARAMS, type ImageRecord, type Turn } from "../../src/domain.ts";

/** A finished turn as the store returns it, for rendering tests; `overrides` set what the test is about. */
export function turnRecord(overrides: Partial<Turn> = {}): Turn {
  return {
    id: randomUUID(),
    threadKey: "console:test:1",
    seq: 2,
    kind: "generate",
    status: "succeeded",
    prompt: "a fox",
    params: DEFAULT_PARAMS,
    userId: "U1",
    sourceMessageId: null,
    idempotencyKey: null,
    targetImageId: null,
    referenceImages: [],
    baseImageId: null,
    providerRequestId: null,
    errorCode: null,
    errorMessage: null,
    attempts: 1,
    costUsd: 0.04,
    estimateUsd: 0.05,
    createdAt: new Date(0),
    startedAt: null,
    finishedAt: null,
    deliveredAt: null,
    deliveryAttempts: 0,
    deliveryLateAt: null,
    ...overrides,
  };
}

/** A stored image's row, for rendering tests. */
export function imageRecord(overrides: Partial<ImageRecord> & Pick<ImageRecord, "index">): ImageRecord {
  return {
    id: randomUUID(),
    threadKey: "console:test:1",
    turnId: "turn-1",
    parentId: null,
    sha256: "0".repeat(64),
    byteSize: 100,
    format: "png",
    width: 1024,
    height: 1024,
    createdAt: new Date(0),
    ...overrides,
  };
}
