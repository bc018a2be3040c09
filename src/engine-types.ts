import type {
  ImageInput,
  ImageParams,
  ImageRecord,
  PartialImage,
  Platform,
  Thread,
  ThreadHistory,
  ThreadKey,
  Turn,
  TurnKind,
} from "./domain.ts";

/** What an adapter asks the engine for. Validated by `submit`; nothing is written when it is invalid. */
export interface Intent {
  threadKey: ThreadKey;
  kind: TurnKind;
  /** For generate and edit. Ignored for undo/select; variation reuses the target image's prompt when empty. */
  prompt?: string;
  /** Flags the user gave; the rest come from defaults (generate) or from the turn that made the base image (edit). */
  params?: Partial<ImageParams>;
  userId: string;
  sourceMessageId?: string | null;
  /** A platform event id (Slack `event_id`, Discord interaction id): the same key twice makes one turn. */
  idempotencyKey?: string | null;
  /** edit/variation: start from this image instead of the head. select: the image to make the head. */
  targetImageId?: string | null;
  /** Extra images (attachments) sent with an edit, after the image being edited. */
  referenceImages?: readonly ImageInput[];
  /** Title and adapter facts for a thread this intent creates. */
  newThread?: { title?: string; meta?: Record<string, unknown> };
}

export interface Submitted {
  turn: Turn;
  /** false when the idempotency key was seen before: the existing turn is returned, nothing new is queued. */
  created: boolean;
  /** How many turns in the same thread are ahead of this one. */
  position: number;
}

export type TurnEvent =
  | { type: "queued"; turn: Turn; position: number }
  | { type: "running"; turn: Turn }
  | { type: "partial"; turn: Turn; partial: PartialImage }
  /** A retryable failure; the turn will run again after `retryInMs`. */
  | { type: "retrying"; turn: Turn; reason: string; retryInMs: number | null }
  | {
      type: "finished";
      turn: Turn;
      thread: Thread;
      images: ImageRecord[];
      /**
       * True when this turn's outcome was saved by an earlier run whose delivery did not get recorded (the
       * process died, or delivering threw part-way): some of it may already be on the platform, so the observer
       * should check what is there before posting again.
       */
      redelivery: boolean;
    };

/**
 * How results get back to a platform. One observer per platform, registered by its adapter; after a restart the
 * new process's adapter receives the turns it did not deliver yet. `deliver` must be idempotent for a given
 * turn: it may be called again if the process died between delivering and recording the delivery.
 */
export interface TurnObserver {
  /** Progress (queued, running, partial previews, retrying). Best effort: errors are logged, not retried. */
  progress?(event: Exclude<TurnEvent, { type: "finished" }>): void | Promise<void>;
  /** The final outcome, success or failure (see `turn.status`, `turn.errorCode`, `turn.errorMessage`). */
  deliver(event: Extract<TurnEvent, { type: "finished" }>): Promise<void>;
}

export interface ConversationEngine {
  submit(intent: Intent): Promise<Submitted>;
  observe(platform: Platform, observer: TurnObserver): void;
  history(threadKey: ThreadKey): Promise<ThreadHistory | null>;
  listThreads(platform: Platform, limit?: number): Promise<Thread[]>;
  /** A thread by its key, or by an alias an adapter gave it (a platform's own id for the thread). */
  getThread(keyOrAlias: string): Promise<Thread | null>;
  /** Lets `getThread` find the thread by the platform's own id for it, once the platform has one. */
  addThreadAlias(alias: string, threadKey: ThreadKey): Promise<void>;
  getTurn(turnId: string): Promise<Turn | null>;
  getImage(imageId: string): Promise<ImageRecord | null>;
  /** Merges adapter facts (message ids to update, …) into the thread's meta. */
  updateThreadMeta(threadKey: ThreadKey, meta: Record<string, unknown>): Promise<void>;
  imageBytes(image: ImageRecord): Promise<Buffer>;
  /** Turns of this platform still queued or running (a crash leaves them so until a worker picks them up). */
  unfinishedTurns(platform: Platform): Promise<Turn[]>;
}
