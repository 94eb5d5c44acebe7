use super::*;

fn response(status: u16, headers: &[(&'static str, &str)], body: &str) -> RawResponse {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    RawResponse {
        status,
        headers: map,
        body: Bytes::from(body.to_owned()),
    }
}

fn options() -> ClientOptions {
    ClientOptions::new(
        Url::parse("https://api.github.com").unwrap(),
        Url::parse("https://api.github.com/graphql").unwrap(),
    )
}

#[test]
fn which_answers_are_retried_and_after_how_long() {
    let o = options();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let cases: Vec<(RawResponse, Option<Wait>)> = vec![
        (
            response(403, &[("retry-after", "30")], "{}"),
            Some(Wait::RateLimit(Duration::from_secs(30))),
        ),
        (
            response(429, &[("retry-after", "7")], "{}"),
            Some(Wait::RateLimit(Duration::from_secs(7))),
        ),
        // An HTTP date 90 s after `now` (1970-01-12T13:46:40Z).
        (
            response(
                429,
                &[("retry-after", "Mon, 12 Jan 1970 13:48:10 GMT")],
                "{}",
            ),
            Some(Wait::RateLimit(Duration::from_secs(90))),
        ),
        // A date already past: retry at once.
        (
            response(
                429,
                &[("retry-after", "Mon, 12 Jan 1970 13:00:00 GMT")],
                "{}",
            ),
            Some(Wait::RateLimit(Duration::ZERO)),
        ),
        (
            response(
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1000045"),
                ],
                "{}",
            ),
            Some(Wait::RateLimit(Duration::from_secs(46))),
        ),
        (
            response(
                403,
                &[],
                r#"{"message":"You have exceeded a secondary rate limit."}"#,
            ),
            Some(Wait::RateLimit(SECONDARY_DEFAULT_WAIT)),
        ),
        (
            response(
                403,
                &[("x-ratelimit-remaining", "12")],
                r#"{"message":"Resource not accessible by integration"}"#,
            ),
            None,
        ),
        (response(404, &[], r#"{"message":"Not Found"}"#), None),
        (
            response(503, &[("retry-after", "12")], ""),
            Some(Wait::RateLimit(Duration::from_secs(12))),
        ),
        (
            response(422, &[], r#"{"message":"Validation Failed"}"#),
            None,
        ),
    ];
    for (r, expected) in cases {
        assert_eq!(retry_delay(&r, 0, &o, now), expected, "status {}", r.status);
    }
    let Some(Wait::Backoff(d)) = retry_delay(&response(502, &[], ""), 2, &o, now) else {
        panic!("502 backs off");
    };
    assert!(
        d >= Duration::from_secs(4) && d <= Duration::from_secs(5),
        "{d:?}"
    );
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let o = options();
    assert!(backoff(0, &o) < Duration::from_millis(1251));
    assert!(backoff(3, &o) >= Duration::from_secs(8));
    assert!(backoff(30, &o) <= Duration::from_secs(75));
}

#[test]
fn next_link_is_found() {
    let link = r#"<https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=5>; rel="last""#;
    assert_eq!(
        next_link(link).as_deref(),
        Some("https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=2")
    );
    assert_eq!(next_link(r#"<https://x/y?page=1>; rel="prev""#), None);
}

#[test]
fn urls_are_built_from_encoded_segments_under_the_base() {
    let mut o = options();
    o.api_url = Url::parse("https://ghe.example.com/api/v3").unwrap();
    let client = GithubClient::personal_token(SecretString::from("t".to_owned()), o).unwrap();
    let url =
        client
            .installation(None)
            .api_url(&["repos", "o", "r", "contents", "a b/.kodiai.yml"]);
    assert_eq!(
        url.as_str(),
        "https://ghe.example.com/api/v3/repos/o/r/contents/a%20b%2F.kodiai.yml"
    );
}
