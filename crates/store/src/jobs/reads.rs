//! The queue's reads for the API and the workers: one job, a page of jobs, a job's events and
//! its steps, the counts per kind and state, and when the next job falls due.

use super::*;
use crate::db::{self, on_reader};

#[derive(sqlx::FromRow)]
struct EventRow {
    job_id: String,
    seq: i64,
    kind: String,
    data: Json<Value>,
    created_at: DateTime<Utc>,
}

impl EventRow {
    fn into_event(self) -> Result<JobEvent> {
        Ok(JobEvent {
            kind: self.kind.parse().map_err(|e| {
                Error::Corrupt(format!("event {} of job {}: {e}", self.seq, self.job_id))
            })?,
            job_id: self.job_id,
            seq: self.seq,
            data: self.data.0,
            created_at: self.created_at,
        })
    }
}

impl Store {
    /// One job.
    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        const SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
        let row: Option<JobRow> = on_reader!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(JobRow::into_job).transpose()
    }

    /// A page of jobs, newest first. `cursor` is the `next_cursor` of the previous page.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Job>> {
        const SQL: &str = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR concurrency_key = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        );
        let limit = limit.max(1);
        let rows: Vec<JobRow> = on_reader!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(&filter.kind)
                .bind(filter.state.map(JobState::as_str))
                .bind(&filter.concurrency_key)
                .bind(cursor)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
        });
        let data = rows
            .into_iter()
            .map(JobRow::into_job)
            .collect::<Result<Vec<_>>>()?;
        Ok(db::page(data, limit, |job| job.id.clone()))
    }

    /// A job's events after `after` (0 for all), in order, at most `limit`.
    pub async fn events_after(
        &self,
        job_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<JobEvent>> {
        const SQL: &str = "SELECT job_id, CAST(seq AS BIGINT) AS seq, kind, data, created_at \
             FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
        let rows: Vec<EventRow> = on_reader!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(job_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// The `step` events of a job, in order: what earlier runs already did.
    pub async fn steps(&self, job_id: &str) -> Result<Vec<JobEvent>> {
        const SQL: &str = "SELECT job_id, CAST(seq AS BIGINT) AS seq, kind, data, created_at \
             FROM job_events WHERE job_id = $1 AND kind = 'step' ORDER BY seq";
        let rows: Vec<EventRow> = on_reader!(self, |pool| sqlx::query_as(SQL)
            .bind(job_id)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// How many jobs there are per kind and state.
    pub async fn job_counts(&self) -> Result<Vec<(String, JobState, i64)>> {
        const SQL: &str = "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state";
        let rows: Vec<(String, String, i64)> =
            on_reader!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(kind, state, count)| {
                let state = state.parse().map_err(|e| Error::Corrupt(format!("{e}")))?;
                Ok((kind, state, count))
            })
            .collect()
    }

    /// When the next queued job of these kinds falls due (now, if one is due already).
    pub async fn next_run_at(&self, kinds: &[JobKind]) -> Result<Option<DateTime<Utc>>> {
        // Few kinds: filtering after the MIN per kind keeps the SQL one string for both backends.
        const SQL: &str = "SELECT kind, MIN(run_at) FROM jobs WHERE state = 'queued' GROUP BY kind";
        let rows: Vec<(String, Option<DateTime<Utc>>)> =
            on_reader!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .filter(|(kind, _)| kinds.iter().any(|k| k.as_str() == kind))
            .filter_map(|(_, at)| at)
            .min())
    }
}
