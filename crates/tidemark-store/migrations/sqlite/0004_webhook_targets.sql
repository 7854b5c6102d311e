-- Version 4: whether an application's webhooks may target private and loopback addresses
-- (allowed by default, for self-hosting; refusable so webhooks cannot probe internal networks).
ALTER TABLE applications ADD COLUMN allow_private_webhook_targets INTEGER NOT NULL DEFAULT 1;
