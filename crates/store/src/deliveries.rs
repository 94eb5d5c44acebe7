//! Webhook deliveries and the GitHub registry (installations, repositories) that some
//! deliveries keep current.
//!
//! A delivery is written inside a [`Tx`] together with what it causes (its job, registry
//! changes), so that a delivery acknowledged with 202 always has its job, and a crash before
//! the commit leaves neither (GitHub then delivers again). The delivery id is the primary key:
//! the same id a second time is counted as a duplicate and changes nothing else.

use chrono::{DateTime, Utc};
use kodiai_protocol::{Delivery, DeliveryDetail, DeliveryOutcome, Page};
use serde_json::Value;
use sqlx::types::Json;

use crate::db::{self, TxInner, on_reader, on_tx, ts};
use crate::{Error, Result, Store, Tx};

/// A verified delivery to store, with what was decided about it.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub delivery_id: &'a str,
    pub event: &'a str,
    pub action: Option<&'a str>,
    pub installation_id: Option<i64>,
    pub repository: Option<&'a str>,
    pub sender: Option<&'a str>,
    /// The JSON body as received (the caller has checked that it is JSON).
    pub payload: &'a str,
    pub received_at: DateTime<Utc>,
    /// `job`, `recorded` or `ignored` (a `job` delivery's job is enqueued in the same
    /// transaction, with this delivery's id).
    pub outcome: StoredOutcome<'a>,
}

/// The outcome column and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredOutcome<'a> {
    Job,
    Recorded(&'a str),
    Ignored(&'a str),
}

impl StoredOutcome<'_> {
    fn column(self) -> &'static str {
        match self {
            Self::Job => "job",
            Self::Recorded(_) => "recorded",
            Self::Ignored(_) => "ignored",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Self::Job => None,
            Self::Recorded(reason) | Self::Ignored(reason) => Some(reason),
        }
    }
}

/// Filters of [`Store::list_deliveries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub event: Option<String>,
    /// `job`, `recorded` or `ignored`.
    pub outcome: Option<String>,
}

/// Whether an installation is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationState {
    Active,
    Suspended,
    /// Uninstalled; its repositories are marked inactive.
    Deleted,
}

/// An installation as an `installation` or `installation_repositories` delivery shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationUpdate {
    pub id: i64,
    pub account_login: String,
    /// `User` or `Organization`.
    pub account_type: String,
    pub app_slug: Option<String>,
    pub state: InstallationState,
}

/// A repository granted to (or taken from) an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUpdate {
    pub github_id: i64,
    pub full_name: String,
    pub name: String,
    pub private: bool,
}

/// An installation row, as tests and the fleet view read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstallationRecord {
    pub id: i64,
    pub account_login: String,
    pub account_type: String,
    pub app_slug: Option<String>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A repository row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RepositoryRecord {
    pub github_id: Option<i64>,
    pub full_name: String,
    pub name: String,
    pub installation_id: Option<i64>,
    pub private: bool,
    pub active: bool,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    delivery_id: String,
    event: String,
    action: Option<String>,
    installation_id: Option<i64>,
    repository: Option<String>,
    sender: Option<String>,
    received_at: DateTime<Utc>,
    outcome: Option<String>,
    reason: Option<String>,
    duplicates: i32,
    replays: i32,
    job_id: Option<String>,
}

impl DeliveryRow {
    fn into_delivery(self) -> Result<Delivery> {
        let reason = self.reason.unwrap_or_default();
        let outcome = match (self.outcome.as_deref(), self.job_id) {
            (Some("job"), Some(job_id)) => DeliveryOutcome::Job { job_id },
            // The job was deleted by hand: say so rather than fail the whole list.
            (Some("job"), None) => DeliveryOutcome::Ignored {
                reason: "its job no longer exists".into(),
            },
            (Some("recorded"), _) => DeliveryOutcome::Recorded { reason },
            (Some("ignored"), _) => DeliveryOutcome::Ignored { reason },
            (other, _) => {
                return Err(Error::Corrupt(format!(
                    "delivery {}: unknown outcome {other:?}",
                    self.delivery_id
                )));
            }
        };
        Ok(Delivery {
            delivery_id: self.delivery_id,
            event: self.event,
            action: self.action,
            installation_id: self.installation_id,
            repository: self.repository,
            sender: self.sender,
            received_at: self.received_at,
            outcome,
            duplicates: u32::try_from(self.duplicates).unwrap_or(0),
            replays: u32::try_from(self.replays).unwrap_or(0),
        })
    }
}

/// Columns of a [`DeliveryRow`] from `webhook_deliveries d`, with the delivery's first job.
macro_rules! delivery_columns {
    () => {
        "d.delivery_id, d.event, d.action, d.installation_id, d.repository, d.sender, \
         d.received_at, d.outcome, d.reason, d.duplicates, d.replays, \
         (SELECT MIN(j.id) FROM jobs j WHERE j.delivery_id = d.delivery_id) AS job_id"
    };
}

/// A page cursor: the last delivery's time (microseconds since the epoch) and id.
fn cursor_of(delivery: &Delivery) -> String {
    format!(
        "{}.{}",
        delivery.received_at.timestamp_micros(),
        delivery.delivery_id
    )
}

/// Reads a cursor of [`cursor_of`]; `None` when it is not one.
pub fn parse_cursor(cursor: &str) -> Option<(DateTime<Utc>, String)> {
    let (micros, id) = cursor.split_once('.')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    (!id.is_empty()).then(|| (at, id.to_owned()))
}

impl Tx {
    /// Stores a delivery. `false` when its id was stored before: then only its duplicate count
    /// goes up, and the caller must do nothing else for it.
    pub async fn insert_delivery(&mut self, delivery: &NewDelivery<'_>) -> Result<bool> {
        // The body goes in as text: SQLite keeps it as is, PostgreSQL casts it to JSONB.
        macro_rules! insert {
            ($payload:literal) => {
                concat!(
                    "INSERT INTO webhook_deliveries (delivery_id, event, action, \
                     installation_id, repository, sender, payload, received_at, processed_at, \
                     outcome, reason) VALUES ($1, $2, $3, $4, $5, $6, ",
                    $payload,
                    ", $8, $8, $9, $10) ON CONFLICT (delivery_id) DO NOTHING"
                )
            };
        }
        const INSERT_SQLITE: &str = insert!("$7");
        const INSERT_POSTGRES: &str = insert!("CAST($7 AS JSONB)");
        const DUPLICATE: &str =
            "UPDATE webhook_deliveries SET duplicates = duplicates + 1 WHERE delivery_id = $1";
        let outcome = delivery.outcome.column();
        let reason = delivery.outcome.reason();
        let sql = match self.inner {
            TxInner::Sqlite(_) => INSERT_SQLITE,
            TxInner::Postgres(_) => INSERT_POSTGRES,
        };
        let inserted = on_tx!(self, |conn| {
            sqlx::query(sql)
                .bind(delivery.delivery_id)
                .bind(delivery.event)
                .bind(delivery.action)
                .bind(delivery.installation_id)
                .bind(delivery.repository)
                .bind(delivery.sender)
                .bind(delivery.payload)
                .bind(ts(delivery.received_at))
                .bind(outcome)
                .bind(reason)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if inserted == 1 {
            return Ok(true);
        }
        on_tx!(self, |conn| {
            sqlx::query(DUPLICATE)
                .bind(delivery.delivery_id)
                .execute(&mut *conn)
                .await?;
        });
        Ok(false)
    }

    /// Records a replay of a stored delivery and what it led to this time.
    pub async fn record_replay(
        &mut self,
        delivery_id: &str,
        outcome: StoredOutcome<'_>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        const SQL: &str = "UPDATE webhook_deliveries SET replays = replays + 1, outcome = $1, \
             reason = $2, processed_at = $3 WHERE delivery_id = $4";
        let column = outcome.column();
        on_tx!(self, |conn| {
            sqlx::query(SQL)
                .bind(column)
                .bind(outcome.reason())
                .bind(ts(now))
                .bind(delivery_id)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// Creates or updates an installation from a delivery.
    pub async fn upsert_installation(
        &mut self,
        installation: &InstallationUpdate,
        now: DateTime<Utc>,
    ) -> Result<()> {
        const UPSERT: &str = "INSERT INTO installations (id, account_login, account_type, \
             app_slug, suspended_at, deleted_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (id) DO UPDATE SET account_login = excluded.account_login, \
             account_type = excluded.account_type, \
             app_slug = COALESCE(excluded.app_slug, installations.app_slug), \
             suspended_at = CASE WHEN excluded.suspended_at IS NULL THEN NULL \
                            ELSE COALESCE(installations.suspended_at, excluded.suspended_at) END, \
             deleted_at = excluded.deleted_at, updated_at = excluded.updated_at";
        const DEACTIVATE: &str = "UPDATE repositories SET active = $1, updated_at = $2 \
             WHERE installation_id = $3";
        let now = ts(now);
        let suspended = (installation.state == InstallationState::Suspended).then_some(now);
        let deleted = (installation.state == InstallationState::Deleted).then_some(now);
        on_tx!(self, |conn| {
            sqlx::query(UPSERT)
                .bind(installation.id)
                .bind(&installation.account_login)
                .bind(&installation.account_type)
                .bind(&installation.app_slug)
                .bind(suspended)
                .bind(deleted)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            if deleted.is_some() {
                sqlx::query(DEACTIVATE)
                    .bind(false)
                    .bind(now)
                    .bind(installation.id)
                    .execute(&mut *conn)
                    .await?;
            }
        });
        Ok(())
    }

    /// Marks a repository as granted to `installation_id` (creating it, or renaming it when
    /// its GitHub id is known under another name).
    pub async fn upsert_repository(
        &mut self,
        installation_id: i64,
        repository: &RepositoryUpdate,
        now: DateTime<Utc>,
    ) -> Result<()> {
        const BY_ID: &str = "UPDATE repositories SET full_name = $1, name = $2, private = $3, \
             installation_id = $4, active = $5, updated_at = $6 WHERE github_id = $7";
        const UPSERT: &str = "INSERT INTO repositories (github_id, installation_id, full_name, \
             name, private, active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (full_name) DO UPDATE SET github_id = excluded.github_id, \
             installation_id = excluded.installation_id, name = excluded.name, \
             private = excluded.private, active = excluded.active, updated_at = excluded.updated_at";
        let now = ts(now);
        on_tx!(self, |conn| {
            let updated = sqlx::query(BY_ID)
                .bind(&repository.full_name)
                .bind(&repository.name)
                .bind(repository.private)
                .bind(installation_id)
                .bind(true)
                .bind(now)
                .bind(repository.github_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if updated == 0 {
                sqlx::query(UPSERT)
                    .bind(repository.github_id)
                    .bind(installation_id)
                    .bind(&repository.full_name)
                    .bind(&repository.name)
                    .bind(repository.private)
                    .bind(true)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            }
        });
        Ok(())
    }

    /// Marks a repository as no longer granted to any installation.
    pub async fn remove_repository(&mut self, github_id: i64, now: DateTime<Utc>) -> Result<()> {
        const SQL: &str = "UPDATE repositories SET installation_id = NULL, active = $1, \
             updated_at = $2 WHERE github_id = $3";
        on_tx!(self, |conn| {
            sqlx::query(SQL)
                .bind(false)
                .bind(ts(now))
                .bind(github_id)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }
}

impl Store {
    /// A page of deliveries, newest first. `cursor` is the `next_cursor` of the previous page
    /// (check it with [`parse_cursor`] first).
    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: u32,
        cursor: Option<(DateTime<Utc>, String)>,
    ) -> Result<Page<Delivery>> {
        const SQL: &str = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries d WHERE ($1 IS NULL OR d.event = $1) \
             AND ($2 IS NULL OR d.outcome = $2) \
             AND ($3 IS NULL OR d.received_at < $3 OR (d.received_at = $3 AND d.delivery_id < $4)) \
             ORDER BY d.received_at DESC, d.delivery_id DESC LIMIT $5"
        );
        let limit = limit.max(1);
        let (at, id) = match cursor {
            Some((at, id)) => (Some(ts(at)), Some(id)),
            None => (None, None),
        };
        let rows: Vec<DeliveryRow> = on_reader!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(&filter.event)
                .bind(&filter.outcome)
                .bind(at)
                .bind(id)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
        });
        let data = rows
            .into_iter()
            .map(DeliveryRow::into_delivery)
            .collect::<Result<Vec<_>>>()?;
        Ok(db::page(data, limit, cursor_of))
    }

    /// One delivery with its payload and jobs.
    pub async fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryDetail>> {
        const SQL: &str = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries d WHERE d.delivery_id = $1"
        );
        const PAYLOAD: &str = "SELECT payload FROM webhook_deliveries WHERE delivery_id = $1";
        const JOBS: &str = "SELECT id FROM jobs WHERE delivery_id = $1 ORDER BY id";
        let (row, payload, jobs) = on_reader!(self, |pool| {
            let row: Option<DeliveryRow> = sqlx::query_as(SQL)
                .bind(delivery_id)
                .fetch_optional(pool)
                .await?;
            let payload: Option<(Json<Value>,)> = sqlx::query_as(PAYLOAD)
                .bind(delivery_id)
                .fetch_optional(pool)
                .await?;
            let jobs: Vec<(String,)> = sqlx::query_as(JOBS)
                .bind(delivery_id)
                .fetch_all(pool)
                .await?;
            (row, payload, jobs)
        });
        let (Some(row), Some((payload,))) = (row, payload) else {
            return Ok(None);
        };
        Ok(Some(DeliveryDetail {
            delivery: row.into_delivery()?,
            payload: payload.0,
            jobs: jobs.into_iter().map(|(id,)| id).collect(),
        }))
    }

    /// The stored body and event of a delivery, for a replay.
    pub async fn delivery_payload(&self, delivery_id: &str) -> Result<Option<(String, String)>> {
        const SQL: &str =
            "SELECT event, CAST(payload AS TEXT) FROM webhook_deliveries WHERE delivery_id = $1";
        let row: Option<(String, String)> = on_reader!(self, |pool| sqlx::query_as(SQL)
            .bind(delivery_id)
            .fetch_optional(pool)
            .await?);
        Ok(row)
    }

    /// How many deliveries are stored.
    pub async fn delivery_count(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM webhook_deliveries";
        let (count,): (i64,) = on_reader!(self, |pool| sqlx::query_as(SQL).fetch_one(pool).await?);
        Ok(count)
    }

    /// One installation.
    pub async fn installation(&self, id: i64) -> Result<Option<InstallationRecord>> {
        const SQL: &str = "SELECT id, account_login, account_type, app_slug, suspended_at, \
             deleted_at FROM installations WHERE id = $1";
        let row = on_reader!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        Ok(row)
    }

    /// Every known repository, by name.
    pub async fn repositories(&self) -> Result<Vec<RepositoryRecord>> {
        const SQL: &str = "SELECT github_id, full_name, name, installation_id, private, active \
             FROM repositories ORDER BY full_name";
        let rows = on_reader!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests;
