-- Radio24 foundation schema (Postgres 15 + pgvector).
-- Status values and program blocks are text with CHECK constraints rather than enum
-- types: adding a value later is a one-line constraint change, not an ALTER TYPE dance.

CREATE EXTENSION IF NOT EXISTS vector;

-- A station. One row today ('main'); the id scopes schedule, submissions and the log.
CREATE TABLE channel (
    id           text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name         text NOT NULL,
    livekit_room text NOT NULL,
    timezone     text NOT NULL DEFAULT 'UTC',
    created_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO channel (id, name, livekit_room) VALUES ('main', 'Radio24', 'radio24');

-- The hour schedule: for each hour of the day, an ordered list of program blocks.
CREATE TABLE schedule (
    channel_id text     NOT NULL REFERENCES channel (id) ON DELETE CASCADE,
    hour       smallint NOT NULL CHECK (hour BETWEEN 0 AND 23),
    position   smallint NOT NULL CHECK (position >= 0),
    block      text     NOT NULL CHECK (block IN ('OP', 'NEWS', 'QANDA', 'MUSIC', 'TOPIC', 'JINGLE')),
    minutes    smallint NOT NULL DEFAULT 10 CHECK (minutes BETWEEN 1 AND 60),
    prompt     text     NOT NULL DEFAULT '',
    -- Rotating topics for TOPIC blocks; the director cycles through them.
    topics     text[]   NOT NULL DEFAULT '{}',
    PRIMARY KEY (channel_id, hour, position)
);

-- A default day: every hour opens, then news, listeners, music, a topic and a jingle.
INSERT INTO schedule (channel_id, hour, position, block, minutes, prompt)
SELECT 'main', h, p, b, m, ''
FROM generate_series(0, 23) AS h,
     (VALUES (0, 'OP', 2), (1, 'NEWS', 8), (2, 'QANDA', 15), (3, 'MUSIC', 15),
             (4, 'TOPIC', 15), (5, 'JINGLE', 5)) AS blocks (p, b, m);

-- A listener's submission and its journey through the pipeline:
-- received -> ingested -> embedded -> approved | held | rejected | duplicate
-- approved -> queued -> on_air -> aired; any -> failed (with reason).
-- Every transition is one guarded UPDATE (WHERE status = expected) that also stamps the
-- column named after the new status.
CREATE TABLE submission (
    id                uuid PRIMARY KEY,
    channel_id        text NOT NULL REFERENCES channel (id),
    user_id           text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 256),
    kind              text NOT NULL CHECK (kind IN ('text', 'audio')),
    text              text,
    audio_path        text,
    audio_mime        text,
    audio_duration_ms integer CHECK (audio_duration_ms >= 0),
    transcript        text,
    status            text NOT NULL CHECK (status IN (
                          'received', 'ingested', 'embedded', 'approved', 'held', 'rejected',
                          'duplicate', 'queued', 'on_air', 'aired', 'failed')),
    failure_reason    text,
    duplicate_of      uuid REFERENCES submission (id),
    -- Idempotency: a retried request with the same key returns the first result.
    idempotency_key   text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash      bytea,
    trace_id          text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    ingested_at       timestamptz,
    embedded_at       timestamptz,
    approved_at       timestamptz,
    held_at           timestamptz,
    rejected_at       timestamptz,
    duplicate_at      timestamptz,
    queued_at         timestamptz,
    on_air_at         timestamptz,
    aired_at          timestamptz,
    failed_at         timestamptz,
    CONSTRAINT submission_payload CHECK (
        (kind = 'text' AND text IS NOT NULL AND audio_path IS NULL)
        OR (kind = 'audio' AND audio_path IS NOT NULL)),
    CONSTRAINT submission_failed_has_reason CHECK (status <> 'failed' OR failure_reason IS NOT NULL),
    CONSTRAINT submission_idempotency UNIQUE (user_id, idempotency_key)
);

CREATE INDEX submission_status_idx ON submission (status, received_at);
CREATE INDEX submission_user_idx ON submission (user_id, received_at DESC);

-- Embeddings, one table per vector space so the two models can never be compared:
-- OpenAI text-embedding-3-small (1536 dims) in production, all-MiniLM-L6-v2 (384) offline.
-- channel_id and created_at are copied from the submission so that the near-duplicate
-- search filters on the table the HNSW index scans (pgvector's iterative index scans keep
-- such filtered queries exact), without a join.
CREATE TABLE submission_embedding (
    submission_id uuid PRIMARY KEY REFERENCES submission (id) ON DELETE CASCADE,
    channel_id    text NOT NULL REFERENCES channel (id),
    model         text NOT NULL,
    embedding     vector(1536) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submission_embedding_hnsw
    ON submission_embedding USING hnsw (embedding vector_cosine_ops);

CREATE TABLE submission_embedding_local (
    submission_id uuid PRIMARY KEY REFERENCES submission (id) ON DELETE CASCADE,
    channel_id    text NOT NULL REFERENCES channel (id),
    model         text NOT NULL,
    embedding     vector(384) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submission_embedding_local_hnsw
    ON submission_embedding_local USING hnsw (embedding vector_cosine_ops);

-- Every moderation decision, by a model or a person, with its scores.
CREATE TABLE moderation_result (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    submission_id uuid NOT NULL REFERENCES submission (id) ON DELETE CASCADE,
    outcome       text NOT NULL CHECK (outcome IN ('approved', 'held', 'rejected')),
    decided_by    text NOT NULL,           -- 'openai:omni-moderation-latest', 'local:rules', 'operator:<id>'
    flagged       boolean NOT NULL,
    categories    jsonb NOT NULL DEFAULT '{}',
    scores        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderation_result_submission_idx ON moderation_result (submission_id, created_at);

-- What played when.
CREATE TABLE on_air_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id     text NOT NULL REFERENCES channel (id),
    segment        text NOT NULL CHECK (segment IN ('OP', 'NEWS', 'QANDA', 'MUSIC', 'TOPIC', 'JINGLE', 'FALLBACK')),
    submission_id  uuid REFERENCES submission (id),
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    transcript     text,
    recording_path text
);
CREATE INDEX on_air_log_time_idx ON on_air_log (channel_id, started_at DESC);

-- Transactional outbox: a message is written in the same transaction as the state it
-- announces, published right after the commit, and deleted once Pub/Sub has it. Rows left
-- behind by an outage or a crash are published by the relay (FOR UPDATE SKIP LOCKED).
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic           text NOT NULL,
    payload         jsonb NOT NULL,
    attributes      jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at);
