//! Small helpers shared by the simulator tests.

use reqwest::header::HeaderMap;
use serde_json::Value;
use tidemark_simulators::jive::PREFIX;

/// One answer, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        Answer {
            status,
            headers,
            text,
        }
    }

    /// The body parsed as JSON, after checking and stripping Jive's prefix.
    pub fn jive_json(&self) -> Value {
        let json = self
            .text
            .strip_prefix(PREFIX)
            .unwrap_or_else(|| panic!("Jive body without the prefix: {}", self.text));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("invalid JSON ({e}): {json}"))
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}
