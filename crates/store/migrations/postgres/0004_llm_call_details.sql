-- What the LLM accounting records beyond migration 0001's llm_calls: time to first token, why
-- the model stopped, and the kind of error (rate_limited, overloaded, context_window_exceeded, …).

ALTER TABLE llm_calls ADD COLUMN time_to_first_token_ms BIGINT;
ALTER TABLE llm_calls ADD COLUMN stop_reason TEXT;
ALTER TABLE llm_calls ADD COLUMN error_kind TEXT;
CREATE INDEX llm_calls_session ON llm_calls (session_id);
