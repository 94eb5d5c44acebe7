//! Webhook ingress (SPEC §2): what a verified delivery becomes, and storing it.
//!
//! [`Ingress::route`] decides from the payload alone, without any call out (the answer to
//! GitHub must not wait): a review or mention job, a registry change (installations and their
//! repositories), a record kept for later (CI events), or nothing, with the reason. The App's
//! own events and bots (unless allowed) never make a job. The [`DeliveryWriter`] then stores the
//! delivery with its job or registry change in one transaction (with the others of its group); a
//! delivery id seen before changes nothing. Slow checks (the sender's permission, `.kodiai.yml`) belong to the jobs.

use chrono::{DateTime, Utc};
use kodiai_github::events::{
    Account, Envelope, Event, InstallationEvent, InstallationRepositoriesEvent,
    InstalledRepository, IssueCommentEvent, IssuesEvent, PullRequestEvent, ReviewCommentEvent,
    ReviewEvent,
};
use kodiai_github::mention::{Mention, MentionMatcher};
use kodiai_github::webhook::WebhookVerifier;
use kodiai_protocol::{DeliveryOutcome, JobSpec, MentionJob, MentionSource, ReviewJob};
use kodiai_store::{
    InstallationState, InstallationUpdate, NewDelivery, NewJob, RepositoryUpdate, Store,
    StoredOutcome, Tx,
};

use kodiai_runtime::config::Config;

/// The `pull_request` actions that start a review.
pub const REVIEW_ACTIONS: &[&str] = &["opened", "ready_for_review", "reopened", "synchronize"];

/// What a delivery leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Enqueue this job.
    Job(Box<NewJob>),
    /// Update the installation registry.
    Registry(RegistryChange),
    /// Kept for later use (CI status); the reason says what it is.
    Recorded(String),
    /// Stored and not acted on, for this reason.
    Ignored(String),
}

/// Changes to the installations and repositories tables.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryChange {
    pub installation: InstallationUpdate,
    pub added: Vec<RepositoryUpdate>,
    /// GitHub ids of repositories no longer granted.
    pub removed: Vec<i64>,
    /// What changed, in words.
    pub summary: String,
}

/// A delivery read and decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub envelope: Envelope,
    pub decision: Decision,
    /// A `ping` (answered 200 rather than 202).
    pub ping: bool,
}

/// A verified delivery as received.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub delivery_id: &'a str,
    pub event: &'a str,
    /// The JSON payload (checked to be UTF-8; [`Ingress::route`] checks it is JSON).
    pub payload: &'a str,
}

/// Reading and deciding deliveries, with the settings that takes. Built once from the
/// configuration; cheap to share.
#[derive(Debug, Clone)]
pub struct Ingress {
    verifier: WebhookVerifier,
    matcher: MentionMatcher,
    /// Lowercase logins of kodiai itself.
    own_logins: Vec<String>,
    /// Lowercase bot logins allowed to trigger; `*` for any.
    allowed_bots: Vec<String>,
    max_attempts: u32,
}

impl Ingress {
    pub fn from_config(config: &Config) -> Self {
        Self {
            verifier: WebhookVerifier::new(config.github.all_webhook_secrets()),
            matcher: MentionMatcher::new(&config.mentions.trigger, &config.mentions.aliases),
            own_logins: config
                .github
                .own_logins()
                .iter()
                .map(|l| l.to_lowercase())
                .collect(),
            allowed_bots: config
                .mentions
                .allowed_bots
                .iter()
                .map(|l| l.to_lowercase())
                .collect(),
            max_attempts: config.jobs.max_attempts,
        }
    }

    pub fn verifier(&self) -> &WebhookVerifier {
        &self.verifier
    }

    pub fn matcher(&self) -> &MentionMatcher {
        &self.matcher
    }

    /// Reads a delivery and decides what it leads to. `Err` when the payload is not JSON; a
    /// JSON payload that does not fit its event is [`Decision::Ignored`] with serde's message.
    pub fn route(&self, incoming: &Incoming<'_>) -> Result<Routed, serde_json::Error> {
        let envelope: Envelope = serde_json::from_str(incoming.payload)?;
        let event = match Event::parse(incoming.event, incoming.payload.as_bytes()) {
            Ok(event) => event,
            Err(e) => {
                return Ok(Routed {
                    envelope,
                    decision: Decision::Ignored(format!(
                        "unreadable {} payload: {e}",
                        incoming.event
                    )),
                    ping: false,
                });
            }
        };
        let ping = matches!(event, Event::Ping(_));
        let decision = self.decide(incoming.delivery_id, event);
        Ok(Routed {
            envelope,
            decision,
            ping,
        })
    }

    fn decide(&self, delivery_id: &str, event: Event) -> Decision {
        match event {
            Event::PullRequest(e) => self.pull_request(delivery_id, &e),
            Event::IssueComment(e) => self.issue_comment(delivery_id, &e),
            Event::PullRequestReviewComment(e) => self.review_comment(delivery_id, &e),
            Event::PullRequestReview(e) => self.review(delivery_id, &e),
            Event::Issues(e) => self.issue(delivery_id, &e),
            Event::Push(e) => Decision::Recorded(format!(
                "push to {} ({} → {})",
                e.git_ref,
                short(&e.before),
                short(&e.after)
            )),
            Event::WorkflowRun(e) => Decision::Recorded(format!(
                "workflow run {} {} at {}{}",
                e.workflow_run.id,
                e.action,
                short(&e.workflow_run.head_sha),
                e.workflow_run
                    .conclusion
                    .as_ref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            )),
            Event::CheckSuite(e) => Decision::Recorded(format!(
                "check suite {} {} at {}{}",
                e.check_suite.id,
                e.action,
                short(&e.check_suite.head_sha),
                e.check_suite
                    .conclusion
                    .as_ref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            )),
            Event::Installation(e) => installation(&e),
            Event::InstallationRepositories(e) => installation_repositories(&e),
            Event::Ping(ping) => Decision::Ignored(format!(
                "ping: the webhook{} is set up",
                ping.hook_id.map(|id| format!(" {id}")).unwrap_or_default()
            )),
            Event::Other(name) => Decision::Ignored(format!("event {name} is not routed")),
        }
    }

    /// Why events of `sender` (and content by `author`) may not trigger anything, if so.
    fn refuse(&self, sender: &Account, author: &Account) -> Option<String> {
        for account in [sender, author] {
            if self.own_logins.contains(&account.login.to_lowercase()) {
                return Some(format!("kodiai's own event ({})", account.login));
            }
        }
        for account in [sender, author] {
            let allowed = self.allowed_bots.iter().any(|b| b == "*")
                || self.allowed_bots.contains(&account.login.to_lowercase());
            if account.is_bot() && !allowed {
                return Some(format!(
                    "{} is a bot (not in mentions.allowed_bots)",
                    account.login
                ));
            }
        }
        None
    }

    fn job(&self, spec: JobSpec, delivery_id: &str, installation_id: Option<i64>) -> Decision {
        let mut job = NewJob::new(spec)
            .delivery(delivery_id)
            .max_attempts(self.max_attempts);
        if let Some(id) = installation_id {
            job = job
                .installation(id)
                .concurrency_key(format!("installation:{id}"));
        }
        Decision::Job(Box::new(job))
    }

    fn pull_request(&self, delivery_id: &str, e: &PullRequestEvent) -> Decision {
        if !REVIEW_ACTIONS.contains(&e.action.as_str()) {
            return Decision::Ignored(format!("pull_request {} is not reviewed", e.action));
        }
        let pr = &e.pull_request;
        if let Some(reason) = self.refuse(&e.sender, &pr.user) {
            return Decision::Ignored(reason);
        }
        let installation_id = e.installation.map(|i| i.id);
        self.job(
            JobSpec::Review(ReviewJob {
                delivery_id: delivery_id.to_owned(),
                installation_id,
                repository: e.repository.full_name.clone(),
                pull_number: pr.number,
                action: e.action.clone(),
                head_sha: pr.head.sha.clone(),
                head_ref: pr.head.name.clone(),
                base_ref: pr.base.name.clone(),
                draft: pr.draft,
                author: pr.user.login.clone(),
                sender: e.sender.login.clone(),
            }),
            delivery_id,
            installation_id,
        )
    }

    /// The mention job for `text` written by `author`, or why there is none.
    fn mention(
        &self,
        delivery_id: &str,
        place: Place<'_>,
        text: &str,
        author: &Account,
        sender: &Account,
    ) -> Decision {
        if let Some(reason) = self.refuse(sender, author) {
            return Decision::Ignored(reason);
        }
        let (trigger, request) = match self.matcher.find(text) {
            Mention::None => {
                return Decision::Ignored(format!("no {} mention", self.trigger_names()));
            }
            Mention::Empty { trigger } => {
                return Decision::Ignored(format!("{trigger} with nothing asked"));
            }
            Mention::Found { trigger, request } => (trigger, request),
        };
        self.job(
            JobSpec::Mention(MentionJob {
                delivery_id: delivery_id.to_owned(),
                installation_id: place.installation_id,
                repository: place.repository.to_owned(),
                number: place.number,
                is_pull_request: place.is_pull_request,
                source: place.source,
                action: place.action.to_owned(),
                comment_id: place.comment_id,
                reply_to: place.reply_to,
                sender: author.login.clone(),
                sender_id: Some(author.id),
                sender_is_bot: author.is_bot() || sender.is_bot(),
                trigger,
                request,
            }),
            delivery_id,
            place.installation_id,
        )
    }

    fn trigger_names(&self) -> String {
        self.matcher.triggers().join(" or ")
    }

    fn issue_comment(&self, delivery_id: &str, e: &IssueCommentEvent) -> Decision {
        if e.action != "created" {
            return Decision::Ignored(not_created("issue_comment", &e.action));
        }
        let place = Place {
            installation_id: e.installation.map(|i| i.id),
            repository: &e.repository.full_name,
            number: e.issue.number,
            is_pull_request: e.issue.pull_request.is_some(),
            source: MentionSource::IssueComment,
            action: &e.action,
            comment_id: Some(e.comment.id),
            reply_to: None,
        };
        self.mention(
            delivery_id,
            place,
            &e.comment.body,
            &e.comment.user,
            &e.sender,
        )
    }

    fn review_comment(&self, delivery_id: &str, e: &ReviewCommentEvent) -> Decision {
        if e.action != "created" {
            return Decision::Ignored(not_created("pull_request_review_comment", &e.action));
        }
        let place = Place {
            installation_id: e.installation.map(|i| i.id),
            repository: &e.repository.full_name,
            number: e.pull_request.number,
            is_pull_request: true,
            source: MentionSource::ReviewComment,
            action: &e.action,
            comment_id: Some(e.comment.id),
            // Replies go to the thread's first comment.
            reply_to: Some(e.comment.in_reply_to_id.unwrap_or(e.comment.id)),
        };
        self.mention(
            delivery_id,
            place,
            &e.comment.body,
            &e.comment.user,
            &e.sender,
        )
    }

    fn review(&self, delivery_id: &str, e: &ReviewEvent) -> Decision {
        if e.action != "submitted" {
            return Decision::Ignored(format!("pull_request_review {} is not routed", e.action));
        }
        let place = Place {
            installation_id: e.installation.map(|i| i.id),
            repository: &e.repository.full_name,
            number: e.pull_request.number,
            is_pull_request: true,
            source: MentionSource::Review,
            action: &e.action,
            comment_id: Some(e.review.id),
            reply_to: None,
        };
        let body = e.review.body.as_deref().unwrap_or_default();
        self.mention(delivery_id, place, body, &e.review.user, &e.sender)
    }

    fn issue(&self, delivery_id: &str, e: &IssuesEvent) -> Decision {
        let body = e.issue.body.as_deref().unwrap_or_default();
        match e.action.as_str() {
            "opened" => {}
            // An edit triggers only when it adds the first mention: editing an issue that
            // mentioned the trigger already never runs it again.
            "edited" => {
                let before = e
                    .changes
                    .as_ref()
                    .and_then(|c| c.body.as_ref())
                    .map(|c| c.from.as_deref().unwrap_or_default());
                match before {
                    None => return Decision::Ignored("issue edit without a body change".into()),
                    Some(before) if self.matcher.mentions(before) => {
                        return Decision::Ignored("edits do not trigger again".into());
                    }
                    Some(_) => {}
                }
            }
            other => return Decision::Ignored(format!("issues {other} is not routed")),
        }
        let place = Place {
            installation_id: e.installation.map(|i| i.id),
            repository: &e.repository.full_name,
            number: e.issue.number,
            is_pull_request: false,
            source: MentionSource::Issue,
            action: &e.action,
            comment_id: None,
            reply_to: None,
        };
        self.mention(delivery_id, place, body, &e.issue.user, &e.sender)
    }

    /// Stores a delivery with what it leads to inside `tx` (the [`DeliveryWriter`]'s group):
    /// `Duplicate` when its id was stored before.
    async fn store_in(
        &self,
        tx: &mut Tx,
        incoming: &Incoming<'_>,
        routed: &Routed,
        now: DateTime<Utc>,
    ) -> kodiai_store::Result<DeliveryOutcome> {
        let envelope = &routed.envelope;
        let delivery = NewDelivery {
            delivery_id: incoming.delivery_id,
            event: incoming.event,
            action: envelope.action.as_deref(),
            installation_id: envelope.installation.map(|i| i.id),
            repository: envelope.repository.as_ref().map(|r| r.full_name.as_str()),
            sender: envelope.sender.as_ref().map(|s| s.login.as_str()),
            payload: incoming.payload,
            received_at: now,
            outcome: stored_outcome(&routed.decision),
        };
        if !tx.insert_delivery(&delivery).await? {
            return Ok(DeliveryOutcome::Duplicate);
        }
        apply(tx, &routed.decision, now).await
    }

    /// Routes a stored delivery again with today's settings (`None` when there is no such
    /// delivery): a new job even if one was made before, registry changes applied again.
    pub async fn replay(
        &self,
        store: &Store,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<DeliveryOutcome>> {
        let Some((event, payload)) = store.delivery_payload(delivery_id).await? else {
            return Ok(None);
        };
        let incoming = Incoming {
            delivery_id,
            event: &event,
            payload: &payload,
        };
        let routed = self.route(&incoming)?;
        let mut tx = store.begin().await?;
        tx.record_replay(delivery_id, stored_outcome(&routed.decision), now)
            .await?;
        let outcome = apply(&mut tx, &routed.decision, now).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }
}

/// Where a mention was written.
struct Place<'a> {
    installation_id: Option<i64>,
    repository: &'a str,
    number: u64,
    is_pull_request: bool,
    source: MentionSource,
    action: &'a str,
    comment_id: Option<u64>,
    reply_to: Option<u64>,
}

fn not_created(event: &str, action: &str) -> String {
    if action == "edited" {
        "edited comments do not trigger".to_owned()
    } else {
        format!("{event} {action} is not routed")
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn stored_outcome(decision: &Decision) -> StoredOutcome<'_> {
    match decision {
        Decision::Job(_) => StoredOutcome::Job,
        Decision::Registry(change) => StoredOutcome::Recorded(&change.summary),
        Decision::Recorded(reason) => StoredOutcome::Recorded(reason),
        Decision::Ignored(reason) => StoredOutcome::Ignored(reason),
    }
}

async fn apply(
    tx: &mut Tx,
    decision: &Decision,
    now: DateTime<Utc>,
) -> kodiai_store::Result<DeliveryOutcome> {
    Ok(match decision {
        Decision::Job(job) => {
            let enqueued = tx.enqueue(job, now).await?;
            DeliveryOutcome::Job {
                job_id: enqueued.id,
            }
        }
        Decision::Registry(change) => {
            tx.upsert_installation(&change.installation, now).await?;
            for repository in &change.added {
                tx.upsert_repository(change.installation.id, repository, now)
                    .await?;
            }
            for github_id in &change.removed {
                tx.remove_repository(*github_id, now).await?;
            }
            DeliveryOutcome::Recorded {
                reason: change.summary.clone(),
            }
        }
        Decision::Recorded(reason) => DeliveryOutcome::Recorded {
            reason: reason.clone(),
        },
        Decision::Ignored(reason) => DeliveryOutcome::Ignored {
            reason: reason.clone(),
        },
    })
}

fn installation_update(
    installation: &kodiai_github::events::Installation,
    state: InstallationState,
) -> InstallationUpdate {
    InstallationUpdate {
        id: installation.id,
        account_login: installation.account.login.clone(),
        account_type: installation
            .account
            .kind
            .clone()
            .unwrap_or_else(|| "User".to_owned()),
        app_slug: installation.app_slug.clone(),
        state,
    }
}

fn repository_update(repository: &InstalledRepository) -> RepositoryUpdate {
    RepositoryUpdate {
        github_id: repository.id,
        full_name: repository.full_name.clone(),
        name: repository.name.clone(),
        private: repository.private,
    }
}

fn installation(e: &InstallationEvent) -> Decision {
    let state = match e.action.as_str() {
        "deleted" => InstallationState::Deleted,
        "suspend" => InstallationState::Suspended,
        "created" | "unsuspend" | "new_permissions_accepted" => InstallationState::Active,
        other => return Decision::Ignored(format!("installation {other} is not routed")),
    };
    let added: Vec<RepositoryUpdate> = if state == InstallationState::Deleted {
        Vec::new()
    } else {
        e.repositories
            .iter()
            .flatten()
            .map(repository_update)
            .collect()
    };
    Decision::Registry(RegistryChange {
        installation: installation_update(&e.installation, state),
        summary: format!(
            "installation {} of {} {}{}",
            e.installation.id,
            e.installation.account.login,
            e.action,
            if added.is_empty() {
                String::new()
            } else {
                format!(" with {} repositories", added.len())
            }
        ),
        added,
        removed: Vec::new(),
    })
}

fn installation_repositories(e: &InstallationRepositoriesEvent) -> Decision {
    if !matches!(e.action.as_str(), "added" | "removed") {
        return Decision::Ignored(format!(
            "installation_repositories {} is not routed",
            e.action
        ));
    }
    let state = if e.installation.suspended_at.is_some() {
        InstallationState::Suspended
    } else {
        InstallationState::Active
    };
    Decision::Registry(RegistryChange {
        installation: installation_update(&e.installation, state),
        added: e.repositories_added.iter().map(repository_update).collect(),
        removed: e.repositories_removed.iter().map(|r| r.id).collect(),
        summary: format!(
            "installation {}: {} repositories added, {} removed",
            e.installation.id,
            e.repositories_added.len(),
            e.repositories_removed.len()
        ),
    })
}

#[cfg(test)]
mod tests;
mod writer;

pub use writer::{Accepted, DeliveryWriter, OwnedIncoming, WriteError};
