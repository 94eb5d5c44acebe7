//! The query of every list endpoint: [`PageQuery`] takes `limit` (default
//! [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and `cursor` (the `next_cursor` of the previous
//! [`kodiai_protocol::Page`]) and hands the endpoint's own filters to its `F`, so that every list
//! pages, and refuses bad pages, the same way.
//!
//! Values arrive as text and are checked here, so that a bad one gets a message naming what is
//! accepted. An empty value counts as absent (HTML forms send empty fields); an unknown or
//! repeated parameter is refused (422), so a misspelt filter cannot silently match everything.

use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::ApiError;
use super::error::query_rejection;

/// Items per page when the client names no limit.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// `limit` and `cursor` as the API document shows them; list endpoints name it in their
/// `params` beside their filters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of a list: its size, the cursor it continues from (checked by the endpoint, which
/// knows what its cursors look like: [`PageQuery::cursor`]) and the endpoint's filters `F`.
#[derive(Debug)]
pub struct PageQuery<F> {
    pub limit: u32,
    cursor: Option<String>,
    pub filters: F,
}

impl<F> PageQuery<F> {
    /// The cursor, parsed by `parse`; one that this server did not hand out is a 400.
    pub fn cursor<C>(&self, parse: impl FnOnce(&str) -> Option<C>) -> Result<Option<C>, ApiError> {
        let Some(text) = &self.cursor else {
            return Ok(None);
        };
        parse(text).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "cursor must be the next_cursor of a previous page, not {:?}",
                quoted(text)
            ))
        })
    }
}

impl<F, S> FromRequestParts<S> for PageQuery<F>
where
    F: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let (mut limit, mut cursor) = (None, None);
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*name {
                "limit" => &mut limit,
                "cursor" => &mut cursor,
                _ => {
                    rest.append_pair(&name, &value);
                    continue;
                }
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(ApiError::unprocessable(format!(
                    "invalid query string: duplicate field `{name}`"
                )));
            }
        }
        // The filters go through axum's own query parsing, with its rules and messages.
        let uri: Uri = format!("/?{}", rest.finish())
            .parse()
            .map_err(|_| ApiError::unprocessable("invalid query string"))?;
        let filters = axum::extract::Query::<F>::try_from_uri(&uri)
            .map_err(|rejection| query_rejection(&rejection))?
            .0;
        let limit = match limit.filter(|text| !text.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}, not {:?}",
                        quoted(&text)
                    ))
                })?,
        };
        Ok(Self {
            limit,
            cursor: cursor.filter(|text| !text.is_empty()),
            filters,
        })
    }
}

/// Client input as quoted in an error message: short, so that a huge value does not come back.
pub fn quoted(text: &str) -> String {
    text.chars().take(64).collect()
}

/// An optional parameter, with an empty value as absent.
pub fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}
