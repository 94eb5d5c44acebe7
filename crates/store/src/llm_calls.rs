//! The LLM accounting: one `llm_calls` row per model call (every attempt, retries and fallbacks
//! included) with its tokens, cost, duration, time to first token and outcome, and the totals
//! by model.

use chrono::{DateTime, Utc};

use crate::db::{on_reader, on_writer, ts};
use crate::{Result, Store};

/// One model call to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLlmCall {
    /// The job the call was made for (it must exist), if any.
    pub job_id: Option<String>,
    /// The API session the call was made for, if any.
    pub session_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: f64,
    pub duration_ms: i64,
    pub time_to_first_token_ms: Option<i64>,
    /// `ok`, `error` or `cancelled`.
    pub outcome: String,
    pub stop_reason: Option<String>,
    /// The kind of error (`rate_limited`, `context_window_exceeded`, …) when `outcome = error`.
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

/// A recorded call.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LlmCall {
    pub id: i64,
    pub job_id: Option<String>,
    pub session_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: f64,
    pub duration_ms: i64,
    pub time_to_first_token_ms: Option<i64>,
    pub outcome: String,
    pub stop_reason: Option<String>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Totals of one model.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ModelUsage {
    pub provider: String,
    pub model: String,
    pub calls: i64,
    pub failed_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: f64,
}

const INSERT: &str = "INSERT INTO llm_calls (job_id, session_id, provider, model, input_tokens, \
     output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, duration_ms, \
     time_to_first_token_ms, outcome, stop_reason, error_kind, error, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id";

macro_rules! call_columns {
    () => {
        "id, job_id, session_id, provider, model, input_tokens, output_tokens, cache_read_tokens, \
         cache_write_tokens, cost_usd, duration_ms, time_to_first_token_ms, outcome, stop_reason, \
         error_kind, error, created_at"
    };
}

const BY_JOB: &str = concat!(
    "SELECT ",
    call_columns!(),
    " FROM llm_calls WHERE job_id = $1 ORDER BY id"
);
const BY_SESSION: &str = concat!(
    "SELECT ",
    call_columns!(),
    " FROM llm_calls WHERE session_id = $1 ORDER BY id"
);

const USAGE_BY_MODEL: &str = "SELECT provider, model, COUNT(*) AS calls, \
     CAST(SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END) AS BIGINT) AS failed_calls, \
     CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
     CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
     CAST(SUM(cache_read_tokens) AS BIGINT) AS cache_read_tokens, \
     CAST(SUM(cache_write_tokens) AS BIGINT) AS cache_write_tokens, \
     CAST(SUM(cost_usd) AS DOUBLE PRECISION) AS cost_usd \
     FROM llm_calls WHERE created_at >= $1 GROUP BY provider, model ORDER BY provider, model";

/// Binds a [`NewLlmCall`] to [`INSERT`].
macro_rules! bind_call {
    ($call:expr, $now:expr) => {
        sqlx::query_scalar::<_, i64>(INSERT)
            .bind(&$call.job_id)
            .bind(&$call.session_id)
            .bind(&$call.provider)
            .bind(&$call.model)
            .bind($call.input_tokens)
            .bind($call.output_tokens)
            .bind($call.cache_read_tokens)
            .bind($call.cache_write_tokens)
            .bind($call.cost_usd)
            .bind($call.duration_ms)
            .bind($call.time_to_first_token_ms)
            .bind(&$call.outcome)
            .bind(&$call.stop_reason)
            .bind(&$call.error_kind)
            .bind(&$call.error)
            .bind($now)
    };
}

impl Store {
    /// Records one call; returns its id.
    pub async fn record_llm_call(&self, call: &NewLlmCall, now: DateTime<Utc>) -> Result<i64> {
        let now = ts(now);
        let id = on_writer!(self, |pool| bind_call!(call, now).fetch_one(pool).await?);
        Ok(id)
    }

    /// The calls of one job, oldest first.
    pub async fn llm_calls_of_job(&self, job_id: &str) -> Result<Vec<LlmCall>> {
        self.llm_calls_where(BY_JOB, job_id).await
    }

    /// The calls of one API session, oldest first.
    pub async fn llm_calls_of_session(&self, session_id: &str) -> Result<Vec<LlmCall>> {
        self.llm_calls_where(BY_SESSION, session_id).await
    }

    async fn llm_calls_where(&self, sql: &'static str, key: &str) -> Result<Vec<LlmCall>> {
        let rows = on_reader!(self, |pool| {
            sqlx::query_as::<_, LlmCall>(sql)
                .bind(key)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// Tokens, cost and calls by model since `since`.
    pub async fn llm_usage_by_model(&self, since: DateTime<Utc>) -> Result<Vec<ModelUsage>> {
        let since = ts(since);
        let rows = on_reader!(self, |pool| {
            sqlx::query_as::<_, ModelUsage>(USAGE_BY_MODEL)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn call(model: &str, outcome: &str, input: i64, cost: f64) -> NewLlmCall {
        NewLlmCall {
            job_id: None,
            session_id: Some("s1".into()),
            provider: "anthropic".into(),
            model: model.into(),
            input_tokens: input,
            output_tokens: 10,
            cache_read_tokens: 5,
            cache_write_tokens: 1,
            cost_usd: cost,
            duration_ms: 1200,
            time_to_first_token_ms: Some(300),
            outcome: outcome.into(),
            stop_reason: (outcome == "ok").then(|| "end_turn".into()),
            error_kind: (outcome == "error").then(|| "overloaded".into()),
            error: (outcome == "error").then(|| "anthropic is overloaded".into()),
        }
    }

    crate::both_backends!(calls_are_recorded_and_summed_by_model, |db| {
        let store = db.store().await;
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        let first = store
            .record_llm_call(&call("m1", "error", 0, 0.0), now)
            .await
            .unwrap();
        let second = store
            .record_llm_call(&call("m1", "ok", 100, 0.25), now)
            .await
            .unwrap();
        store
            .record_llm_call(&call("m2", "ok", 7, 0.5), now)
            .await
            .unwrap();
        assert!(second > first);

        let calls = store.llm_calls_of_session("s1").await.unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].error_kind.as_deref(), Some("overloaded"));
        assert_eq!(calls[1].input_tokens, 100);
        assert_eq!(calls[1].time_to_first_token_ms, Some(300));
        assert_eq!(calls[1].stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(calls[1].created_at, now);

        let usage = store
            .llm_usage_by_model(now - chrono::Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(usage.len(), 2);
        assert_eq!(
            (
                usage[0].model.as_str(),
                usage[0].calls,
                usage[0].failed_calls
            ),
            ("m1", 2, 1)
        );
        assert_eq!(usage[0].input_tokens, 100);
        assert_eq!(usage[0].cache_read_tokens, 10);
        assert!((usage[0].cost_usd - 0.25).abs() < 1e-12);
        let later = store
            .llm_usage_by_model(now + chrono::Duration::hours(1))
            .await
            .unwrap();
        assert!(later.is_empty());
    });
}
