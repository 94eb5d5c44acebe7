-- Incremental reviews: the last commit of each pull request kodiai reviewed (a synchronize
-- reviews only what came after it), and every finding a review posted, by fingerprint (rule or
-- first line of the comment, path, whitespace-collapsed code of the anchored lines), so that
-- a finding is never posted twice on one pull request.

CREATE TABLE reviewed_heads (
    repository   TEXT    NOT NULL,            -- owner/name, lower case
    pull_number  INTEGER NOT NULL,
    head_sha     TEXT    NOT NULL,
    review_id    INTEGER NOT NULL,
    reviewed_at  TEXT    NOT NULL,
    PRIMARY KEY (repository, pull_number)
);

CREATE TABLE review_findings (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    repository   TEXT    NOT NULL,
    pull_number  INTEGER NOT NULL,
    fingerprint  TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    line         INTEGER NOT NULL,
    head_sha     TEXT    NOT NULL,
    review_id    INTEGER NOT NULL,
    created_at   TEXT    NOT NULL,
    UNIQUE (repository, pull_number, fingerprint)
);
