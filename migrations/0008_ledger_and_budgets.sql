CREATE TABLE "ledger" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"client_request_id" text NOT NULL,
	"turn_id" uuid,
	"platform" text NOT NULL,
	"user_id" text NOT NULL,
	"workspace_id" text,
	"channel_id" text,
	"endpoint" text NOT NULL,
	"retry" integer DEFAULT 0 NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"request_id" text,
	"http_status" integer,
	"usage" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"price_version" text NOT NULL,
	"estimate_usd" numeric NOT NULL,
	"cost_usd" numeric DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"settled_at" timestamp with time zone,
	CONSTRAINT "ledger_client_request_id_unique" UNIQUE("client_request_id"),
	CONSTRAINT "ledger_platform_check" CHECK ("ledger"."platform" in ('console', 'slack', 'discord')),
	CONSTRAINT "ledger_status_check" CHECK ("ledger"."status" in ('pending', 'billed', 'not_billed', 'unknown'))
);
--> statement-breakpoint
ALTER TABLE "threads" ADD COLUMN "workspace_id" text;--> statement-breakpoint
ALTER TABLE "threads" ADD COLUMN "channel_id" text;--> statement-breakpoint
ALTER TABLE "turns" ADD COLUMN "estimate_usd" numeric DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "turns" ADD COLUMN "reserved_usd" numeric DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "ledger" ADD CONSTRAINT "ledger_turn_id_turns_id_fk" FOREIGN KEY ("turn_id") REFERENCES "public"."turns"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "ledger_turn_idx" ON "ledger" USING btree ("turn_id");--> statement-breakpoint
CREATE INDEX "ledger_user_idx" ON "ledger" USING btree ("platform","user_id","created_at");--> statement-breakpoint
CREATE INDEX "ledger_channel_idx" ON "ledger" USING btree ("platform","channel_id","created_at");--> statement-breakpoint
CREATE INDEX "ledger_workspace_idx" ON "ledger" USING btree ("platform","workspace_id","created_at");--> statement-breakpoint
CREATE INDEX "turns_reserved_idx" ON "turns" USING btree ("created_at") WHERE "turns"."reserved_usd" > 0;--> statement-breakpoint
-- Threads made before budgets: the workspace and channel come from the key (`slack:T:C:ts`, `discord:G:…`) and,
-- for Discord, the parent channel the adapter kept in meta.
UPDATE "threads" SET
	"workspace_id" = CASE WHEN "platform" = 'console' THEN 'console' ELSE split_part("key", ':', 2) END,
	"channel_id" = CASE
		WHEN "platform" = 'slack' THEN split_part("key", ':', 3)
		WHEN "platform" = 'discord' THEN "meta"->>'channelId'
		ELSE 'console' END;--> statement-breakpoint
-- Turns billed before the ledger existed: one row each, so spend totals read from the ledger stay whole.
INSERT INTO "ledger" ("client_request_id", "turn_id", "platform", "user_id", "workspace_id", "channel_id", "endpoint",
	"status", "request_id", "usage", "price_version", "estimate_usd", "cost_usd", "created_at", "settled_at")
SELECT 'before-ledger:' || t."id", t."id", th."platform", t."user_id", th."workspace_id", th."channel_id", 'unrecorded',
	'billed', t."provider_request_id", coalesce((SELECT jsonb_agg(jsonb_build_object('model', u."model",
		'inputTokens', u."input_tokens", 'inputTextTokens', u."input_text_tokens", 'inputImageTokens', u."input_image_tokens",
		'outputTokens', u."output_tokens", 'outputImageTokens', u."output_image_tokens", 'reasoningTokens', u."reasoning_tokens",
		'totalTokens', u."total_tokens", 'costUsd', u."cost_usd")) FROM "usage" u WHERE u."turn_id" = t."id"), '[]'::jsonb),
	'before-ledger', 0, t."cost_usd", coalesce(t."started_at", t."created_at"), coalesce(t."finished_at", t."created_at")
FROM "turns" t JOIN "threads" th ON th."key" = t."thread_key"
WHERE t."cost_usd" > 0;
