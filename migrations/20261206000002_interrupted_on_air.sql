-- An on-air log row the streamer could not close (it stopped mid-item) is closed at its next
-- start, marked as interrupted: the log says what aired to the end and what was cut off.
ALTER TABLE on_air_log ADD COLUMN interrupted boolean NOT NULL DEFAULT false;
