//! What incremental reviews remember per pull request: the last head commit kodiai reviewed
//! (`reviewed_heads`), so that a push is reviewed from there, and the fingerprint of every
//! finding a review posted (`review_findings`), so that none is posted twice. Repositories are
//! keyed by `owner/name` in lower case (GitHub's names are case-insensitive).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::db::{in_transaction, on_reader, ts};
use crate::{Result, Store};

/// A posted review to remember: its pull request, the commit it reviewed, its findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRecord {
    /// `owner/name`.
    pub repository: String,
    pub pull_number: u64,
    pub head_sha: String,
    pub review_id: u64,
    pub findings: Vec<PostedFinding>,
}

/// One finding of a posted review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedFinding {
    pub fingerprint: String,
    pub path: String,
    pub line: u64,
}

/// The last review of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedHead {
    pub head_sha: String,
    pub review_id: u64,
    pub reviewed_at: DateTime<Utc>,
}

const UPSERT_HEAD: &str = "INSERT INTO reviewed_heads \
     (repository, pull_number, head_sha, review_id, reviewed_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (repository, pull_number) DO UPDATE SET head_sha = excluded.head_sha, \
     review_id = excluded.review_id, reviewed_at = excluded.reviewed_at";
const INSERT_FINDING: &str = "INSERT INTO review_findings \
     (repository, pull_number, fingerprint, path, line, head_sha, review_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (repository, pull_number, fingerprint) DO NOTHING";
const SELECT_HEAD: &str = "SELECT head_sha, review_id, reviewed_at FROM reviewed_heads \
     WHERE repository = $1 AND pull_number = $2";
const SELECT_FINGERPRINTS: &str =
    "SELECT fingerprint FROM review_findings WHERE repository = $1 AND pull_number = $2";

fn key(repository: &str) -> String {
    repository.to_lowercase()
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Runs the writes of [`Store::record_review`] in transaction `$tx`.
macro_rules! write_review {
    ($tx:expr, $record:expr, $now:expr) => {{
        let repository = key(&$record.repository);
        let number = int($record.pull_number);
        let review_id = int($record.review_id);
        sqlx::query(UPSERT_HEAD)
            .bind(&repository)
            .bind(number)
            .bind(&$record.head_sha)
            .bind(review_id)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        for finding in &$record.findings {
            sqlx::query(INSERT_FINDING)
                .bind(&repository)
                .bind(number)
                .bind(&finding.fingerprint)
                .bind(&finding.path)
                .bind(int(finding.line))
                .bind(&$record.head_sha)
                .bind(review_id)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

impl Store {
    /// Remembers a posted review: its head becomes the pull request's last reviewed commit and
    /// its findings' fingerprints are kept (one already known stays as first recorded). One
    /// transaction.
    pub async fn record_review(&self, record: &ReviewRecord, now: DateTime<Utc>) -> Result<()> {
        let now = ts(now);
        in_transaction!(self, |tx| {
            write_review!(tx, record, now);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The last review kodiai recorded for a pull request, if any.
    pub async fn last_reviewed_head(
        &self,
        repository: &str,
        pull_number: u64,
    ) -> Result<Option<ReviewedHead>> {
        let repository = key(repository);
        let number = int(pull_number);
        let row: Option<(String, i64, DateTime<Utc>)> = on_reader!(self, |pool| {
            sqlx::query_as(SELECT_HEAD)
                .bind(&repository)
                .bind(number)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(head_sha, review_id, reviewed_at)| ReviewedHead {
            head_sha,
            review_id: u64::try_from(review_id).unwrap_or_default(),
            reviewed_at,
        }))
    }

    /// The fingerprints of every finding posted on a pull request.
    pub async fn posted_fingerprints(
        &self,
        repository: &str,
        pull_number: u64,
    ) -> Result<HashSet<String>> {
        let repository = key(repository);
        let number = int(pull_number);
        let rows: Vec<String> = on_reader!(self, |pool| {
            sqlx::query_scalar(SELECT_FINGERPRINTS)
                .bind(&repository)
                .bind(number)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn finding(fingerprint: &str, line: u64) -> PostedFinding {
        PostedFinding {
            fingerprint: fingerprint.into(),
            path: "src/lib.rs".into(),
            line,
        }
    }

    crate::both_backends!(
        reviews_remember_the_last_head_and_every_finding_once,
        |db| {
            let store = db.store().await;
            let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
            assert_eq!(store.last_reviewed_head("o/r", 2).await.unwrap(), None);
            assert!(
                store
                    .posted_fingerprints("o/r", 2)
                    .await
                    .unwrap()
                    .is_empty()
            );

            let first = ReviewRecord {
                repository: "Owner/Repo".into(),
                pull_number: 2,
                head_sha: "aaa".into(),
                review_id: 10,
                findings: vec![finding("f1", 3), finding("f2", 7)],
            };
            store.record_review(&first, t0).await.unwrap();
            let t1 = t0 + chrono::Duration::minutes(5);
            let second = ReviewRecord {
                head_sha: "bbb".into(),
                review_id: 11,
                findings: vec![finding("f2", 8), finding("f3", 9)],
                ..first.clone()
            };
            store.record_review(&second, t1).await.unwrap();

            // Case does not matter; the last review wins; each fingerprint is there once.
            assert_eq!(
                store.last_reviewed_head("owner/repo", 2).await.unwrap(),
                Some(ReviewedHead {
                    head_sha: "bbb".into(),
                    review_id: 11,
                    reviewed_at: t1,
                })
            );
            let mut prints: Vec<String> = store
                .posted_fingerprints("OWNER/repo", 2)
                .await
                .unwrap()
                .into_iter()
                .collect();
            prints.sort();
            assert_eq!(prints, ["f1", "f2", "f3"]);
            // Another pull request knows none of them.
            assert!(
                store
                    .posted_fingerprints("owner/repo", 3)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    );
}
