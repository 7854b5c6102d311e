-- Version 9: each activity's v1 event, rendered once when it is committed.
--
-- Broker messages (and anything else that serves the v1 form) would otherwise parse every
-- stored v2 text to render it, which is most of what building a message costs.
--
-- `v1` is the v1 event as JSON, or the JSON literal `null` when v1 has no form for the
-- activity (reads, errors, unclassified activity); `v1_type` is the event's v1 type, NULL
-- when there is none. The event's `metadata` is the activity's target, already in `body`:
-- when `v1_target_at` and `v1_target_len` say where it lies there, `v1` stops after
-- `"metadata":` and the event is `v1`, that slice of `body`, and `}`. `v1` is SQL NULL for
-- rows committed before this version: readers render those from `body`, as before.
ALTER TABLE activity ADD COLUMN v1_type TEXT;
ALTER TABLE activity ADD COLUMN v1 TEXT;
ALTER TABLE activity ADD COLUMN v1_target_at INTEGER;
ALTER TABLE activity ADD COLUMN v1_target_len INTEGER;
