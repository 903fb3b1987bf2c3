-- One accepted text submission, as ingest's POST /v1/submissions commits it
-- (functions/ingest/src/routes/submissions.rs + shared/src/outbox.rs): BEGIN, the
-- submission row, the outbox row, COMMIT; four round trips like sqlx's, then its share of
-- the batched outbox DELETE. Run with
-- `pgbench -M prepared` so statements are parsed once per connection, as sqlx's
-- statement cache does. The id is time-ordered like ingest's UUIDv7 (index inserts stay
-- local); the text, hash and trace id vary per transaction. No colon may appear in a
-- literal or comment here: pgbench would take colon-name for one of its variables.
\set n random(1, 2000000000)
BEGIN;
INSERT INTO submission (id, channel_id, user_id, kind, text, audio_path, audio_mime,
    audio_duration_ms, status, idempotency_key, request_hash, trace_id, ingested_at)
VALUES ((lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
         || '7' || substr(md5(:n::text || :client_id::text), 1, 19))::uuid,
        'main', 'anon:127.0.0.1', 'text',
        'Listener ' || :client_id::text || '-' || :n::text
            || ': please play something upbeat for the night shift, and say hello to all',
        NULL, NULL, NULL, 'ingested', NULL,
        sha256(convert_to('text' || :n::text, 'UTF8')), md5(:n::text || 'trace'), now())
ON CONFLICT ON CONSTRAINT submission_idempotency DO NOTHING
RETURNING received_at;
INSERT INTO outbox (topic, payload, attributes, next_attempt_at)
VALUES ('submission-ingested',
        jsonb_build_object('schema', 1, 'event', 'submission.ingested',
            'submission_id', md5(:n::text)::uuid, 'channel_id', 'main', 'kind', 'text',
            'occurred_at', clock_timestamp(),
            'traceparent', '00-' || md5(:n::text || 'trace') || '-'
                || substr(md5(:n::text || 'span'), 1, 16) || '-00'),
        jsonb_build_object('event', 'submission.ingested', 'schema', '1',
            'submission_id', md5(:n::text)::uuid::text,
            'traceparent', '00-' || md5(:n::text || 'trace') || '-'
                || substr(md5(:n::text || 'span'), 1, 16) || '-00'),
        now() + make_interval(secs => 10))
RETURNING id \gset
COMMIT;
-- ingest's deleter (delete_published in shared/src/outbox.rs) removes published rows in
-- batches, one autocommit `DELETE ... WHERE id = ANY($1)` per batch. Here the transaction
-- whose outbox id is a multiple of batch deletes the last batch ids (an index range, like
-- ingest's list of ids), so there is one DELETE of batch rows per batch submissions.
-- bench/ingest.sh sets batch (-D batch=N) to the average batch ingest achieved.
\if :id % :batch = 0
DELETE FROM outbox WHERE id > :id::bigint - :batch::bigint AND id <= :id::bigint;
\endif
