//! The OpenAPI document's frame: title, security schemes, tags. The paths and schemas come
//! from the handlers' `#[utoipa::path]` annotations as they are registered.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::Modify;

/// The document's frame.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tidemark",
        description = "Self-hosted activity monitoring, wire-compatible with the Kloudless Activity API (v1 events, v2 activity). Account and subscription routes are served under both `/v1` and `/v2`, with or without a trailing slash. Every error has the shape of `ErrorBody`.",
    ),
    modifiers(&Security),
    tags(
        (name = "accounts", description = "Connected upstream accounts"),
        (name = "subscriptions", description = "What is watched in an account"),
        (name = "activity", description = "Activity streams, followed by cursor"),
        (name = "events", description = "The v1 event stream of an account's default subscription"),
        (name = "application", description = "The application's settings, API keys and token introspection"),
        (name = "webhooks", description = "JSON webhook endpoints, their attempts, and recovery"),
        (name = "destinations", description = "Message-broker destinations (NATS JetStream, RabbitMQ, Redis Streams) and their attempts"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`APIKey <key>`: the whole application",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Bearer <token>`: one account (named `me` in paths)"))
                    .build(),
            ),
        );
    }
}
