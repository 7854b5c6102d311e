-- Version 5: time-range reads and the watermark.
--
-- Time-range reads (List Activity with from/until) walk this index in
-- (timestamp, sequence) order, so a range page costs what a cursor page costs however large
-- the stream. Activity without a timestamp is in no range.
CREATE INDEX activity_by_time ON activity(subscription_id, occurred_at, sequence)
    WHERE occurred_at IS NOT NULL;

-- The time before which the subscription's stream is known complete (epoch microseconds),
-- reported by its connector with each checkpoint and only ever moved forward; NULL: unknown.
ALTER TABLE subscriptions ADD COLUMN watermark INTEGER;
