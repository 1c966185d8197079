-- The websocket chat backend's table from the post-mortem: a boolean is_active that the
-- disconnect handler forgot to clear, and two end columns (session_end, ended_at).
CREATE TABLE IF NOT EXISTS public.conversation_sessions (
  session_id        uuid PRIMARY KEY,
  user_id           text NOT NULL,
  agent_role        text,
  is_active         boolean NOT NULL DEFAULT true,
  session_start     timestamptz NOT NULL DEFAULT now(),
  last_activity_at  timestamptz,
  session_end       timestamptz,
  ended_at          timestamptz,
  duration_seconds  integer
);
-- What the orphan query needs (warden doctor checks for it).
CREATE INDEX IF NOT EXISTS conversation_sessions_open_silence_idx
  ON public.conversation_sessions ((COALESCE(last_activity_at, session_start)))
  WHERE is_active;
