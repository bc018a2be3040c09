CREATE TABLE "inbox" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "inbox_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"platform" text NOT NULL,
	"key" text NOT NULL,
	"kind" text NOT NULL,
	"payload" jsonb,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"claimed_until" timestamp with time zone NOT NULL,
	"attempts" integer DEFAULT 1 NOT NULL,
	"finished_at" timestamp with time zone,
	"outcome" text,
	CONSTRAINT "inbox_key_unique" UNIQUE("key"),
	CONSTRAINT "inbox_platform_check" CHECK ("inbox"."platform" in ('console', 'slack', 'discord'))
);
--> statement-breakpoint
CREATE INDEX "inbox_unfinished_idx" ON "inbox" USING btree ("claimed_until") WHERE "inbox"."finished_at" is null;--> statement-breakpoint
CREATE INDEX "inbox_finished_idx" ON "inbox" USING btree ("finished_at") WHERE "inbox"."finished_at" is not null;