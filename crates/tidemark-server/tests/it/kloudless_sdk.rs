//! The official Kloudless Python SDK (`kloudless==2.0.1`) against a running server: an
//! application written for Kloudless, pointed at Tidemark, must work unchanged.
//!
//! The test keeps a virtualenv with the SDK under `CARGO_TARGET_TMPDIR` (created on the first
//! run, reused afterwards) and runs `kloudless_sdk.py`, which does the checking; see there.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::harness::TestServer;

/// The SDK release the script is written against.
const SDK_REQUIREMENT: &str = "kloudless==2.0.1";
/// The script, next to this file.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/kloudless_sdk.py");
/// How long the script may run before it is killed (it makes a few hundred local requests).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Activity appended to the default subscription: several pages of 10.
const ACTIVITY_COUNT: usize = 25;

/// Runs `command` with its output in files (no pipe to fill up), killing it after `timeout`.
/// Returns its exit status (`None` if it was killed), stdout and stderr.
fn run_with_timeout(
    mut command: Command,
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let logs = tempfile::tempdir().expect("temp dir for the script's output");
    let stdout_path = logs.path().join("stdout");
    let stderr_path = logs.path().join("stderr");
    let stdout = std::fs::File::create(&stdout_path).expect("stdout file");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {command:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    (status, read(&stdout_path), read(&stderr_path))
}

#[tokio::test(flavor = "multi_thread")]
async fn test_the_official_kloudless_python_sdk_works_unchanged() {
    let python = tokio::task::spawn_blocking(|| {
        crate::python::venv_with("kloudless-sdk-venv", SDK_REQUIREMENT, "kloudless")
    })
    .await
    .expect("the virtualenv task")
    .unwrap_or_else(|message| {
        panic!("the Kloudless SDK is needed for this test and could not be set up: {message}")
    });

    let server = TestServer::start().await;
    let account = server.connect_local(&server.key()).await;
    let (status, subscription) = server
        .call(
            Method::POST,
            &format!("/v1/accounts/{}/subscriptions", account.id),
            &server.key(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    assert_eq!(subscription["default"], true, "{subscription}");
    let subscription_id = subscription["id"].as_i64().expect("subscription id");
    let ids: Vec<String> = (1..=ACTIVITY_COUNT)
        .map(|n| format!("sdk-{n:02}"))
        .collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    server.append(subscription_id, account.id, &id_refs).await;

    let mut command = Command::new(&python);
    command
        .arg(SCRIPT)
        .env("BASE_URL", &server.base)
        .env("API_KEY", &server.api_key)
        .env("APPLICATION_ID", server.application_id.to_string())
        .env("ACCOUNT_ID", account.id.to_string())
        .env("BEARER_TOKEN", &account.token)
        .env("SUBSCRIPTION_ID", subscription_id.to_string())
        .env("EXPECTED_IDS", ids.join(","))
        // The server is on loopback: never through a proxy from the environment.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_with_timeout(command, SCRIPT_TIMEOUT))
            .await
            .expect("the script task");
    println!(
        "--- kloudless_sdk.py stdout ---\n{stdout}\n--- kloudless_sdk.py stderr ---\n{stderr}"
    );
    // libtest shows the output printed above when the test fails.
    let status = status.unwrap_or_else(|| {
        panic!(
            "kloudless_sdk.py did not finish within {}s (its output is above)",
            SCRIPT_TIMEOUT.as_secs()
        )
    });
    assert!(
        status.success(),
        "kloudless_sdk.py failed ({status}): its output is above"
    );
    // The account's directory stays until the script is done.
    drop(account);
}
