//! [`Client`]: one base URL and one credential, and a method per API call.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, TryStreamExt as _};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tidemark_model::{Activity, Subscription};

use crate::types::{
    Account, AccountRef, ActivityPage, NewAccount, NewSubscription, ObjectList, Query, RangeRead,
    SubscriptionRef,
};
use crate::ClientError;

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: APIKey <key>`: the application's scope, any of its accounts by id.
    ApiKey(String),
    /// `Authorization: Bearer <token>`: one account's scope (it may be named `me`).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::ApiKey(_) => f.write_str("ApiKey(..)"),
            Auth::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// What the client does when the server answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of one request after 429 answers before giving up with
    /// [`ClientError::RateLimited`].
    pub max_retries: u32,
    /// The longest `Retry-After` waited out; a longer one is returned at once as
    /// [`ClientError::RateLimited`].
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    /// Five retries, waiting at most a minute each.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            max_wait: Duration::from_secs(60),
        }
    }
}

/// How long to wait when a 429 has no (readable) `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A Tidemark (or Kloudless-compatible) API client. Cheap to clone: clones share one
/// connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// Without a trailing slash.
    base: String,
    authorization: HeaderValue,
    retry: RetryPolicy,
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`), with a 10 s
    /// connect timeout and a 120 s timeout per request.
    ///
    /// # Errors
    /// [`ClientError::InvalidRequest`] for a base URL that is not http(s) or a credential that
    /// cannot be a header.
    pub fn new(base_url: &str, auth: Auth) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()?;
        Client::with_http(base_url, auth, http)
    }

    /// A client sending its requests through `http` (its timeouts, proxies, TLS roots).
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn with_http(
        base_url: &str,
        auth: Auth,
        http: reqwest::Client,
    ) -> Result<Client, ClientError> {
        let base = base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| ClientError::InvalidRequest(format!("base URL `{base}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ClientError::InvalidRequest(format!(
                "base URL `{base}` must be http:// or https:// with a host"
            )));
        }
        let header = match &auth {
            Auth::ApiKey(key) => format!("APIKey {key}"),
            Auth::Bearer(token) => format!("Bearer {token}"),
        };
        let mut authorization = HeaderValue::from_str(&header).map_err(|_| {
            ClientError::InvalidRequest("the credential has characters a header cannot hold".into())
        })?;
        authorization.set_sensitive(true);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: base.to_owned(),
                authorization,
                retry: RetryPolicy::default(),
            }),
        })
    }

    /// The same client with another 429 policy.
    pub fn with_retry(self, retry: RetryPolicy) -> Client {
        Client {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: self.inner.base.clone(),
                authorization: self.inner.authorization.clone(),
                retry,
            }),
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Sends one request, waiting out 429s as the retry policy allows; returns a successful
    /// answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.inner.base);
        let mut retries = 0;
        loop {
            let mut request = self
                .inner
                .http
                .request(method.clone(), &url)
                .header(AUTHORIZATION, self.inner.authorization.clone());
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = retry_after(&response);
                if retries >= self.inner.retry.max_retries
                    || retry_after > self.inner.retry.max_wait
                {
                    return Err(ClientError::RateLimited { retry_after });
                }
                retries += 1;
                tracing::debug!(
                    path,
                    retries,
                    wait_ms = retry_after.as_millis() as u64,
                    "rate limited; waiting"
                );
                tokio::time::sleep(retry_after).await;
                continue;
            }
            return Err(api_error(status, response).await);
        }
    }

    /// Sends a request and decodes its JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method, path, query, body).await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::decode(path, e))
    }

    /// Every page of a list of objects.
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        patch: fn(&mut Value),
    ) -> Result<Vec<T>, ClientError> {
        let mut all = Vec::new();
        let mut page = 1u64;
        loop {
            let query = [("page", page.to_string()), ("page_size", "1000".to_owned())];
            let list: ObjectList<Value> = self.call(Method::GET, path, &query, None).await?;
            for mut object in list.objects {
                patch(&mut object);
                all.push(serde_json::from_value(object).map_err(|e| ClientError::decode(path, e))?);
            }
            match list.next_page {
                Some(next) if next > page => page = next,
                _ => return Ok(all),
            }
        }
    }

    /// `GET /v1/accounts`: the application's accounts (with a bearer token: its own).
    ///
    /// # Errors
    /// As the request: [`ClientError::Api`] for bad credentials, transport errors, ...
    pub async fn list_accounts(&self) -> Result<Vec<Account>, ClientError> {
        self.list_all("/v1/accounts", |_| {}).await
    }

    /// `GET /v1/accounts/{account}`.
    ///
    /// # Errors
    /// [`ClientError::Api`] with status 404 for an unknown (or another tenant's) account.
    pub async fn get_account(&self, account: AccountRef) -> Result<Account, ClientError> {
        self.call(Method::GET, &format!("/v1/accounts/{account}"), &[], None)
            .await
    }

    /// `POST /v1/accounts`: connects an account (the server checks it with its upstream).
    /// The answer carries the account's bearer token, shown only this once.
    ///
    /// # Errors
    /// [`ClientError::Api`] with status 400 for an unknown service or a bad config.
    pub async fn create_account(&self, account: &NewAccount) -> Result<Account, ClientError> {
        let body = serde_json::to_value(account).map_err(|e| ClientError::decode("account", e))?;
        self.call(Method::POST, "/v1/accounts", &[], Some(&body))
            .await
    }

    /// `GET /v2/accounts/{account}/subscriptions`: every subscription of the account. Lists
    /// leave out `last_cursor`; those fields are `None` here.
    ///
    /// # Errors
    /// As [`Client::get_account`].
    pub async fn list_subscriptions(
        &self,
        account: AccountRef,
    ) -> Result<Vec<Subscription>, ClientError> {
        self.list_all(&format!("/v2/accounts/{account}/subscriptions"), |object| {
            if let Some(object) = object.as_object_mut() {
                for field in ["last_cursor", "last_cursor_updated_at"] {
                    object.entry(field).or_insert(Value::Null);
                }
            }
        })
        .await
    }

    /// `GET /v2/accounts/{account}/subscriptions/{subscription}`.
    ///
    /// # Errors
    /// [`ClientError::Api`] with status 404 for an unknown subscription (or none `default`).
    pub async fn get_subscription(
        &self,
        account: AccountRef,
        subscription: SubscriptionRef,
    ) -> Result<Subscription, ClientError> {
        self.call(
            Method::GET,
            &format!("/v2/accounts/{account}/subscriptions/{subscription}"),
            &[],
            None,
        )
        .await
    }

    /// `POST /v2/accounts/{account}/subscriptions`.
    ///
    /// # Errors
    /// [`ClientError::Api`] with status 400 for bad fields or too many subscriptions.
    pub async fn create_subscription(
        &self,
        account: AccountRef,
        subscription: &NewSubscription,
    ) -> Result<Subscription, ClientError> {
        let body = serde_json::to_value(subscription)
            .map_err(|e| ClientError::decode("subscription", e))?;
        self.call(
            Method::POST,
            &format!("/v2/accounts/{account}/subscriptions"),
            &[],
            Some(&body),
        )
        .await
    }

    fn activity_path(account: AccountRef, subscription: SubscriptionRef) -> String {
        format!("/v2/accounts/{account}/subscriptions/{subscription}/activity")
    }

    /// One page of List Activity: the stream after a cursor, or a time range (whose answer
    /// carries the watermark).
    ///
    /// # Errors
    /// [`ClientError::Api`] with status 400 for a bad cursor, a cursor combined with a range,
    /// `from` after `until`, a page size outside 1..=1000.
    pub async fn activity_page(
        &self,
        account: AccountRef,
        subscription: SubscriptionRef,
        query: &Query,
    ) -> Result<ActivityPage, ClientError> {
        self.call(
            Method::GET,
            &Client::activity_path(account, subscription),
            &query.params(),
            None,
        )
        .await
    }

    /// One page of List Activity as the server sent it, undecoded (the tracker copies the
    /// activity objects out without building them).
    pub(crate) async fn activity_page_body(
        &self,
        account: AccountRef,
        subscription: SubscriptionRef,
        query: &Query,
    ) -> Result<impl AsRef<[u8]>, ClientError> {
        let response = self
            .send(
                Method::GET,
                &Client::activity_path(account, subscription),
                &query.params(),
                None,
            )
            .await?;
        Ok(response.bytes().await?)
    }

    /// The pages of List Activity from `query` on, following each answer's cursor, until
    /// (and without) the first empty page. The last page's cursor is the one to keep; it is
    /// in each page.
    pub fn activity_pages(
        &self,
        account: AccountRef,
        subscription: SubscriptionRef,
        query: Query,
    ) -> impl Stream<Item = Result<ActivityPage, ClientError>> + Send + 'static {
        let client = self.clone();
        futures::stream::try_unfold(Some(query), move |next| {
            let client = client.clone();
            async move {
                let Some(query) = next else {
                    return Ok(None);
                };
                let page = client.activity_page(account, subscription, &query).await?;
                if page.objects.is_empty() {
                    return Ok(None);
                }
                let mut following = Query::after(page.cursor.clone());
                following.page_size = query.page_size;
                Ok(Some((page, Some(following))))
            }
        })
    }

    /// The activity of List Activity from `query` on, one at a time, following cursors until
    /// an empty page (see [`Client::activity_pages`] to keep the cursor).
    pub fn activity_stream(
        &self,
        account: AccountRef,
        subscription: SubscriptionRef,
        query: Query,
    ) -> impl Stream<Item = Result<Activity, ClientError>> + Send + 'static {
        self.activity_pages(account, subscription, query)
            .map_ok(|page| futures::stream::iter(page.objects.into_iter().map(Ok)))
            .try_flatten()
    }

    /// Reads the time range `[from, until)` to its end (an empty page) in pages of
    /// `page_size`: its activities in (timestamp, sequence) order, the range's last cursor and
    /// the subscription's watermark. The range is complete for good when `until` is at or
    /// below the watermark.
    ///
    /// # Errors
    /// As [`Client::activity_page`].
    pub async fn read_range(
        &self,
        account: AccountRef,
        subscription: SubscriptionRef,
        from: chrono::DateTime<chrono::Utc>,
        until: Option<chrono::DateTime<chrono::Utc>>,
        page_size: u32,
    ) -> Result<RangeRead, ClientError> {
        let mut query = Query::range(from, until).page_size(page_size);
        let mut activities = Vec::new();
        loop {
            let page = self.activity_page(account, subscription, &query).await?;
            if page.objects.is_empty() {
                return Ok(RangeRead {
                    activities,
                    cursor: page.cursor,
                    watermark: page.watermark,
                });
            }
            activities.extend(page.objects);
            query = Query::after(page.cursor).page_size(page_size);
        }
    }
}

/// The wait a 429 asks for (`Retry-After` in seconds; dates are not used by Tidemark).
fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map_or(DEFAULT_RETRY_AFTER, |seconds| {
            Duration::from_secs_f64(seconds.min(86_400.0))
        })
}

/// The Kloudless error body.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    id: String,
}

/// An [`ClientError::Api`] from an unsuccessful answer; a body that is not the error shape
/// (a proxy's page) becomes the message.
async fn api_error(status: StatusCode, response: reqwest::Response) -> ClientError {
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) if !body.error_code.is_empty() => ClientError::Api {
            status: status.as_u16(),
            error_code: body.error_code,
            message: body.message,
            id: if body.id.is_empty() {
                header_id
            } else {
                body.id
            },
        },
        _ => ClientError::Api {
            status: status.as_u16(),
            error_code: "unexpected_response".to_owned(),
            message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            id: header_id,
        },
    }
}
