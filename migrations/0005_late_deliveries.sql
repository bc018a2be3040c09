ALTER TABLE "turns" ADD COLUMN "delivery_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "turns" ADD COLUMN "delivery_late_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "turns" ADD COLUMN "delivery_retry_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "turns_delivery_retry_idx" ON "turns" USING btree ("delivery_retry_at") WHERE "turns"."delivery_retry_at" is not null;