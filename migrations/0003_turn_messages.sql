CREATE TABLE "turn_messages" (
	"turn_id" uuid NOT NULL,
	"role" text NOT NULL,
	"ref" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "turn_messages_turn_id_role_pk" PRIMARY KEY("turn_id","role"),
	CONSTRAINT "turn_messages_role_check" CHECK ("turn_messages"."role" in ('status'))
);
--> statement-breakpoint
ALTER TABLE "turn_messages" ADD CONSTRAINT "turn_messages_turn_id_turns_id_fk" FOREIGN KEY ("turn_id") REFERENCES "public"."turns"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Written by hand after the generated statements: the status messages adapters kept as `status:<turn id>` keys
-- in threads.meta move to turn_messages (keys naming a turn that no longer exists are dropped), then leave meta.
INSERT INTO "turn_messages" ("turn_id", "role", "ref")
SELECT t."id", 'status', m."value"
FROM "threads" th
CROSS JOIN LATERAL jsonb_each_text(th."meta") AS m("key", "value")
JOIN "turns" t ON t."id"::text = substr(m."key", 8) AND t."thread_key" = th."key"
WHERE m."key" LIKE 'status:%'
ON CONFLICT DO NOTHING;--> statement-breakpoint
UPDATE "threads"
SET "meta" = "meta" - ARRAY(SELECT k FROM jsonb_object_keys("meta") AS k WHERE k LIKE 'status:%')
WHERE EXISTS (SELECT 1 FROM jsonb_object_keys("meta") AS k WHERE k LIKE 'status:%');
