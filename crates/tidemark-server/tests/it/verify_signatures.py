"""Verifies a Tidemark webhook with stock code: the `standardwebhooks` library for the
Standard Webhooks headers, and Python's own hmac for X-Kloudless-Signature (seed 003:
Base64(HMAC-SHA256(api_key, body))). Input: a JSON file with secret, api_key, headers, body."""

import base64
import hashlib
import hmac
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

with open(sys.argv[1]) as f:
    case = json.load(f)
body = case["body"].encode()
headers = case["headers"]

# Standard Webhooks: the stock verifier accepts the request as sent...
Webhook(case["secret"]).verify(body, headers)
# ...and rejects a tampered body, a replayed (old) timestamp, and another endpoint's secret.
for name, bad_body, bad_headers, secret in [
    ("tampered body", body.replace(b"}", b",\"x\":1}"), headers, case["secret"]),
    ("old timestamp", body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 3600)}, case["secret"]),
    ("other secret", body, headers, "whsec_" + base64.b64encode(b"another secret, 24 bytes").decode()),
]:
    try:
        Webhook(secret).verify(bad_body, bad_headers)
    except WebhookVerificationError:
        pass
    else:
        sys.exit(f"standardwebhooks accepted a {name}")

# X-Kloudless-Signature, computed by hand.
expected = base64.b64encode(hmac.new(case["api_key"].encode(), body, hashlib.sha256).digest()).decode()
if headers.get("x-kloudless-signature") != expected:
    sys.exit(f"X-Kloudless-Signature {headers.get('x-kloudless-signature')!r} != {expected!r}")
print("both signatures verified")
