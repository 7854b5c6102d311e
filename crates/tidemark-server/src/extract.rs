//! Request extractors whose every rejection is an [`ApiError`] (never axum's plain-text one).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use tidemark_model::{Account, ApplicationId};

use crate::credentials::digest;
use crate::error::ApiError;
use crate::AppState;

/// A JSON request body. An empty body reads as `{}` (Kloudless accepts an empty POST to create
/// a default subscription); anything else must be JSON of the expected shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_ascii_lowercase);
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            format!(
                                "the request body is larger than {} bytes",
                                crate::MAX_BODY_BYTES
                            ),
                        )
                    }
                    other => ApiError::invalid(format!(
                        "could not read the request body: {}",
                        other.body_text()
                    )),
                })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"{}")
                .map(JsonBody)
                .map_err(|e| ApiError::invalid(describe_json_error(&e)));
        }
        if let Some(content_type) = content_type {
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("the request body must be JSON (Content-Type: application/json), not `{essence}`"),
                ));
            }
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(describe_json_error(&e)))
    }
}

fn describe_json_error(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON in the request body: {error}")
        }
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            format!("invalid request body: {error}")
        }
    }
}

/// Query parameters, decoded leniently (bad percent-encoding is replaced, never an error);
/// each route checks the ones it knows and ignores others, as Kloudless did.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

impl Params {
    /// The raw value of a parameter (empty values count as absent).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// `page` (from 1, default 1) and `page_size` (1..=1000, default 100) of a listing.
    ///
    /// # Errors
    /// 400 naming the parameter that is out of range.
    pub fn pagination(&self) -> Result<(u64, u64), ApiError> {
        Ok((
            self.integer("page", 1..=u64::from(u32::MAX), 1)?,
            self.integer("page_size", 1..=1000, 100)?,
        ))
    }

    /// An integer parameter within `range`, or `default` when absent.
    ///
    /// # Errors
    /// 400 naming the parameter when it is not a whole number in range.
    pub fn integer(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> Result<u64, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        match text.trim().parse::<u64>() {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(ApiError::invalid(format!(
                "`{name}` must be a whole number from {} to {}, got `{}`",
                range.start(),
                range.end(),
                truncate(text, 40)
            ))),
        }
    }
}

/// Shortens client-supplied text before quoting it back in a message.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max_chars).collect::<String>())
    }
}

/// Who is calling, from the `Authorization` header.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `Authorization: APIKey <key>`: the whole application.
    Application {
        /// The key's application.
        application_id: ApplicationId,
    },
    /// `Authorization: Bearer <token>`: one account.
    Account(Box<Account>),
}

impl Caller {
    /// The application the caller acts for.
    pub fn application_id(&self) -> ApplicationId {
        match self {
            Caller::Application { application_id } => *application_id,
            Caller::Account(account) => account.application_id,
        }
    }

    /// The application, for routes that need an API key.
    ///
    /// # Errors
    /// 401 when the caller used a bearer token.
    pub fn require_api_key(&self) -> Result<ApplicationId, ApiError> {
        match self {
            Caller::Application { application_id } => Ok(*application_id),
            Caller::Account(_) => Err(ApiError::unauthorized(
                "this route needs an application API key (`Authorization: APIKey <key>`), not a bearer token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing Authorization header: use `APIKey <key>` or `Bearer <token>`",
                )
            })?
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
        let (scheme, secret) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let secret = secret.trim();
        if secret.is_empty() || secret.len() > crate::credentials::MAX_SECRET_LEN {
            return Err(ApiError::unauthorized("invalid credentials"));
        }
        let known_scheme =
            scheme.eq_ignore_ascii_case("apikey") || scheme.eq_ignore_ascii_case("bearer");
        if known_scheme {
            if let Some(caller) = state.credentials.get(&digest(secret)) {
                let same_kind = matches!(
                    (&caller, scheme.eq_ignore_ascii_case("apikey")),
                    (Caller::Application { .. }, true) | (Caller::Account(_), false)
                );
                if same_kind {
                    return Ok(caller);
                }
            }
        }
        if scheme.eq_ignore_ascii_case("apikey") {
            let key = state.store.find_api_key(digest(secret)).await?;
            match key {
                Some(key) => {
                    let caller = Caller::Application {
                        application_id: key.application_id,
                    };
                    state.credentials.put(digest(secret), caller.clone());
                    Ok(caller)
                }
                None => Err(ApiError::unauthorized("invalid API key")),
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            match state.store.find_account_by_token(digest(secret)).await? {
                Some(account) => {
                    let caller = Caller::Account(Box::new(account));
                    state.credentials.put(digest(secret), caller.clone());
                    Ok(caller)
                }
                None => Err(ApiError::unauthorized("invalid bearer token")),
            }
        } else {
            Err(ApiError::unauthorized(format!(
                "unsupported Authorization scheme `{}`: use `APIKey <key>` or `Bearer <token>`",
                truncate(scheme, 20)
            )))
        }
    }
}
