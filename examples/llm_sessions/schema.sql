-- The Elixir app's sessions after they moved out of ETS into PostgreSQL: no is_active flag;
-- a session is open until expired_at is set, and it expires by silence (last_query_at).
CREATE TABLE IF NOT EXISTS public.llm_sessions (
  id             bigserial PRIMARY KEY,
  role           text NOT NULL,
  history        jsonb NOT NULL DEFAULT '[]',
  turn_count     integer NOT NULL DEFAULT 0,
  token_total    bigint NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_query_at  timestamptz,
  expired_at     timestamptz
);
CREATE INDEX IF NOT EXISTS llm_sessions_open_silence_idx
  ON public.llm_sessions ((COALESCE(last_query_at, created_at)))
  WHERE expired_at IS NULL;
