-- embed and moderate: who transcribed a recording, and the operator's queue of held
-- submissions (oldest first).
ALTER TABLE submission ADD COLUMN transcribed_by text;

CREATE INDEX submission_held_idx ON submission (channel_id, held_at) WHERE status = 'held';

-- A decision records the categories that decided it and, for an operator, their note.
ALTER TABLE moderation_result
    ADD COLUMN triggered text[] NOT NULL DEFAULT '{}',
    ADD COLUMN note text CHECK (length(note) <= 1000);
