//! Webhooks over https: a receiver with a certificate generated at test time, trusted through
//! [`NotifierConfig::extra_root_certificates_pem`], gets its webhooks; one the notifier does not
//! trust gets nothing, and the attempt is recorded as failed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tidemark_notify::webhooks::NotifierConfig;
use tidemark_store::NewWebhookEndpoint;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

use super::{fast_config, start_notifier, wait_for, wait_for_attempts, Receiver};
use crate::harness::TestServer;

/// A fresh self-signed certificate for `127.0.0.1` and its key.
fn self_signed_certificate() -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("self-signed certificate")
}

/// A receiver behind TLS.
struct TlsReceiver {
    receiver: Receiver,
    /// TLS handshakes that failed (the client refused the certificate).
    failed_handshakes: Arc<AtomicUsize>,
}

/// Hands axum the connections whose TLS handshake succeeded.
struct TlsListener {
    local: SocketAddr,
    streams: tokio::sync::mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(stream) => stream,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl TlsReceiver {
    async fn start(
        application_id: i64,
        generated: &rcgen::CertifiedKey<rcgen::KeyPair>,
    ) -> TlsReceiver {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        let tls = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![generated.cert.der().clone()], key)
            .expect("server TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = tcp.local_addr().expect("addr");
        let (handshaken, streams) = tokio::sync::mpsc::channel(64);
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let failures = Arc::clone(&failed_handshakes);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = tcp.accept().await {
                let acceptor = acceptor.clone();
                let handshaken = handshaken.clone();
                let failures = Arc::clone(&failures);
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(tls) => {
                            let _ = handshaken.send((tls, peer)).await;
                        }
                        Err(_) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let (state, app) = Receiver::app(application_id);
        tokio::spawn(async move { axum::serve(TlsListener { local, streams }, app).await });
        TlsReceiver {
            receiver: Receiver {
                url: format!("https://{local}/hook"),
                state,
            },
            failed_handshakes,
        }
    }
}

fn trusting(certificate_pem: &str) -> NotifierConfig {
    NotifierConfig {
        extra_root_certificates_pem: Some(certificate_pem.to_owned()),
        ..fast_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_webhooks_are_delivered_over_https_to_a_receiver_whose_certificate_is_trusted() {
    let certificate = self_signed_certificate();
    let config = trusting(&certificate.cert.pem());
    let server = TestServer::start_with(config.clone()).await;
    let trusted = TlsReceiver::start(server.application_id, &certificate).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    // The test request on creation goes over TLS too.
    let endpoint = super::create_endpoint(&server, &trusted.receiver.url, None).await;
    let endpoint_id = endpoint["id"].as_i64().expect("id");
    let (notifier, stop) = start_notifier(&server, config);
    server.append(subscription, account.id, &["over-tls"]).await;
    notifier.wake();
    wait_for("the webhook over https", Duration::from_secs(20), || {
        !trusted.receiver.notifications().is_empty()
    })
    .await;
    let received = trusted.receiver.notifications().remove(0);
    assert_eq!(
        received.body,
        format!(
            "{{\"account\":{},\"subscription\":{subscription}}}",
            account.id
        )
        .into_bytes()
    );
    let attempts = wait_for_attempts(&server, endpoint_id, 1, Duration::from_secs(20)).await;
    assert_eq!(attempts[0]["status"], "success", "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 200, "{attempts:?}");
    assert_eq!(trusted.failed_handshakes.load(Ordering::SeqCst), 0);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_untrusted_certificate_is_a_recorded_failed_attempt() {
    let config = trusting(&self_signed_certificate().cert.pem());
    let server = TestServer::start_with(config.clone()).await;
    let untrusted = TlsReceiver::start(server.application_id, &self_signed_certificate()).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;

    // The test request on creation already refuses it, saying why.
    let (status, error) = server
        .call(
            Method::POST,
            "/v1/webhooks",
            &server.key(),
            Some(json!({"url": untrusted.receiver.url})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error_code"], "webhook_test_failed", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate"),
        "{error}"
    );

    // An endpoint saved anyway (its certificate changed after creation, say) is tried and fails.
    let endpoint = server
        .store
        .create_webhook(NewWebhookEndpoint {
            application_id: server.application_id,
            url: untrusted.receiver.url.clone(),
            filter: None,
            secret: tidemark_notify::signing::new_endpoint_secret(),
        })
        .await
        .expect("endpoint");
    let (notifier, stop) = start_notifier(&server, config);
    server
        .append(subscription, account.id, &["not-over-tls"])
        .await;
    notifier.wake();
    let attempts = wait_for_attempts(&server, endpoint.id, 2, Duration::from_secs(30)).await;
    for attempt in &attempts {
        assert_eq!(attempt["status"], "failure", "{attempts:?}");
        assert!(attempt["status_code"].is_null(), "{attempts:?}");
        let error = attempt["error"].as_str().unwrap_or_default();
        assert!(error.contains("certificate"), "{attempts:?}");
    }
    assert!(
        untrusted.receiver.notifications().is_empty(),
        "nothing is sent to an untrusted receiver"
    );
    assert!(untrusted.failed_handshakes.load(Ordering::SeqCst) >= 2);
    let _ = stop.send(());
}
