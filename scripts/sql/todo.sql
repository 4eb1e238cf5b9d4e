-- The table of examples/todo. Loading it again keeps the rows.
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS todos (
  id bigserial PRIMARY KEY,
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  description text,
  completed boolean NOT NULL DEFAULT false
);
