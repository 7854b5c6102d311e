-- Version 3 (SQLite version 8): the message a destination is publishing from a position.
--
-- A message's id is (subscription, first sequence), and a consumer (or JetStream's duplicate
-- window) drops a repeated id. So a message published again after a lost acknowledgement must
-- carry exactly what the first copy carried, even if more activity was committed meanwhile:
-- `pending_through` is the last sequence of a message that may have reached the broker without
-- its acknowledgement being committed, and the next publish from this position ends there.
ALTER TABLE destination_positions ADD COLUMN pending_through BIGINT;
