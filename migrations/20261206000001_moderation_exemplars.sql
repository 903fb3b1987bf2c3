-- The local moderator's labelled exemplars (models/src/moderation/exemplars.tsv), embedded by
-- embed at start-up in the vector space of its model: one table per space, like the
-- submissions' vectors. `version` names the exemplar file's content, so a new file is seeded
-- beside the old one and each moderator reads the version it was built with.
-- Small (hundreds of rows a version): the nearest-exemplar search scans them exactly, which
-- is faster than an index at this size and never cut short by the version filter.
CREATE TABLE moderation_exemplar (
    version   text     NOT NULL,
    model     text     NOT NULL,
    position  integer  NOT NULL CHECK (position >= 0),
    label     text     NOT NULL,
    harmful   boolean  NOT NULL,
    text      text     NOT NULL,
    embedding vector(1536) NOT NULL,
    PRIMARY KEY (version, model, position)
);

CREATE TABLE moderation_exemplar_local (
    version   text     NOT NULL,
    model     text     NOT NULL,
    position  integer  NOT NULL CHECK (position >= 0),
    label     text     NOT NULL,
    harmful   boolean  NOT NULL,
    text      text     NOT NULL,
    embedding vector(384) NOT NULL,
    PRIMARY KEY (version, model, position)
);
