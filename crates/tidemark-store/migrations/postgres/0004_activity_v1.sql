-- Version 4 (SQLite version 9): each activity's v1 event, rendered once when it is committed,
-- as the SQLite store keeps it (see its migration 9 for the columns' meaning): broker
-- messages copy it instead of parsing every stored v2 text. `v1` is NULL for rows committed
-- before this version; readers render those from `body`, as before.
ALTER TABLE activity
    ADD COLUMN v1_type TEXT,
    ADD COLUMN v1 TEXT,
    ADD COLUMN v1_target_at BIGINT,
    ADD COLUMN v1_target_len BIGINT;

-- The commit function takes the four columns too (see version 1 for what it does).
DROP FUNCTION tidemark_commit(BIGINT, BIGINT, TEXT[], BIGINT[], TEXT[], TEXT, BIGINT, BIGINT);

CREATE FUNCTION tidemark_commit(
    p_subscription BIGINT,
    p_lease_token  BIGINT,
    p_ids          TEXT[],
    p_times        BIGINT[],
    p_bodies       TEXT[],
    p_v1_types     TEXT[],
    p_v1s          TEXT[],
    p_v1_at        BIGINT[],
    p_v1_len       BIGINT[],
    p_checkpoint   TEXT,
    p_watermark    BIGINT,
    p_now          BIGINT,
    OUT appended      BIGINT,
    OUT duplicates    BIGINT,
    OUT last_sequence BIGINT
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_last      BIGINT;
    v_committed BIGINT;
    v_token     BIGINT;
BEGIN
    SELECT s.last_sequence, s.last_committed_at, s.lease_token
      INTO v_last, v_committed, v_token
      FROM subscriptions s WHERE s.id = p_subscription FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription % not found', p_subscription USING ERRCODE = 'TM002';
    END IF;
    IF p_lease_token IS NOT NULL AND p_lease_token <> v_token THEN
        RAISE EXCEPTION 'lease lost on subscription %', p_subscription USING ERRCODE = 'TM001';
    END IF;
    v_committed := GREATEST(p_now, v_committed);

    -- The usual batch repeats nothing (no id twice in it, none already in the stream): its
    -- rows are numbered by their place in the batch, with no sort. Otherwise the first
    -- occurrence of each new id is kept, numbered in batch order.
    IF NOT EXISTS (SELECT 1 FROM activity a
                    WHERE a.subscription_id = p_subscription AND a.activity_id = ANY (p_ids))
       AND (SELECT count(DISTINCT x) FROM unnest(p_ids) AS x) = COALESCE(array_length(p_ids, 1), 0)
    THEN
        INSERT INTO activity (subscription_id, sequence, activity_id, occurred_at, committed_at, body,
                              v1_type, v1, v1_target_at, v1_target_len)
        SELECT p_subscription, v_last + t.ord, t.id, t.ts, v_committed, t.body,
               t.v1_type, t.v1, t.v1_at, t.v1_len
          FROM unnest(p_ids, p_times, p_bodies, p_v1_types, p_v1s, p_v1_at, p_v1_len)
               WITH ORDINALITY AS t(id, ts, body, v1_type, v1, v1_at, v1_len, ord);
    ELSE
        WITH input AS (
            SELECT t.id, t.ts, t.body, t.v1_type, t.v1, t.v1_at, t.v1_len, t.ord
              FROM unnest(p_ids, p_times, p_bodies, p_v1_types, p_v1s, p_v1_at, p_v1_len)
                   WITH ORDINALITY AS t(id, ts, body, v1_type, v1, v1_at, v1_len, ord)
        ), fresh AS (
            SELECT DISTINCT ON (i.id) i.id, i.ts, i.body, i.v1_type, i.v1, i.v1_at, i.v1_len, i.ord
              FROM input i
             WHERE NOT EXISTS (SELECT 1 FROM activity a
                                WHERE a.subscription_id = p_subscription AND a.activity_id = i.id)
             ORDER BY i.id, i.ord
        )
        INSERT INTO activity (subscription_id, sequence, activity_id, occurred_at, committed_at, body,
                              v1_type, v1, v1_target_at, v1_target_len)
        SELECT p_subscription, v_last + row_number() OVER (ORDER BY f.ord), f.id, f.ts, v_committed, f.body,
               f.v1_type, f.v1, f.v1_at, f.v1_len
          FROM fresh f;
    END IF;
    GET DIAGNOSTICS appended = ROW_COUNT;

    duplicates := COALESCE(array_length(p_ids, 1), 0) - appended;
    last_sequence := v_last + appended;
    UPDATE subscriptions s
       SET last_sequence = v_last + appended,
           last_committed_at = v_committed,
           retained_count = s.retained_count + appended,
           watermark = CASE WHEN p_watermark IS NULL THEN s.watermark
                            ELSE GREATEST(COALESCE(s.watermark, p_watermark), p_watermark) END
     WHERE s.id = p_subscription;
    IF p_checkpoint IS NOT NULL THEN
        INSERT INTO checkpoints (subscription_id, state, updated_at)
        VALUES (p_subscription, p_checkpoint, v_committed)
        ON CONFLICT (subscription_id) DO UPDATE
           SET state = excluded.state, updated_at = excluded.updated_at;
    END IF;
END;
$$;
