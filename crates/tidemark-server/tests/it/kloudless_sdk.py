"""Drives Tidemark with the official Kloudless Python SDK (kloudless==2.0.1).

Run by `kloudless_sdk.rs` against a server it started, with these environment variables:

    BASE_URL         the server, without `/v1` (the SDK adds it)
    API_KEY          the application's API key
    APPLICATION_ID   the application's id
    ACCOUNT_ID       a connected account of that application
    BEARER_TOKEN     that account's bearer token
    SUBSCRIPTION_ID  the account's default (and only) subscription
    EXPECTED_IDS     comma-separated ids of the activity in that subscription, in order

Only the SDK's public API is used, the way an application written for Kloudless uses it.
Each check is a function; a failed `assert` exits non-zero with a message.
"""

import json
import logging
import os
import sys
import tempfile
import traceback

import kloudless
from kloudless import Account, Client, exceptions
from kloudless.resources import Resource, ResourceList

BASE_URL = os.environ["BASE_URL"]
API_KEY = os.environ["API_KEY"]
APPLICATION_ID = os.environ["APPLICATION_ID"]
ACCOUNT_ID = int(os.environ["ACCOUNT_ID"])
BEARER_TOKEN = os.environ["BEARER_TOKEN"]
SUBSCRIPTION_ID = int(os.environ["SUBSCRIPTION_ID"])
EXPECTED_IDS = [i for i in os.environ["EXPECTED_IDS"].split(",") if i]

PAGE_SIZE = 10

# Must be set before any Client is built: a client reads it when constructed.
kloudless.configuration["base_url"] = BASE_URL
# The SDK logs every failed request at ERROR, expected ones included; its exceptions carry the
# response body anyway.
logging.getLogger("kloudless").setLevel(logging.CRITICAL)


def accounts():
    """The two ways an application reaches one account: its token, or the API key and id."""
    return [
        ("bearer token", Account(token=BEARER_TOKEN)),
        ("API key", Account(api_key=API_KEY, account_id=ACCOUNT_ID)),
    ]


def expect_exception(exception_type, call):
    """Runs `call`, which must raise `exception_type`; returns the exception."""
    try:
        result = call()
    except exception_type as error:
        return error
    raise AssertionError(
        "expected {}, got a response: {!r}".format(exception_type.__name__, result)
    )


def check_verify_token():
    data = kloudless.application.verify_token(APPLICATION_ID, BEARER_TOKEN)
    assert data["account_id"] == ACCOUNT_ID, "verify_token names the account: {}".format(data)
    assert data["client_id"] == APPLICATION_ID, "client_id is the application id: {}".format(data)
    # The SDK's own wrapper on top of verify_token.
    account = kloudless.get_verified_account(APPLICATION_ID, BEARER_TOKEN)
    assert account.get().data["id"] == ACCOUNT_ID, "the verified account is reachable"
    expect_exception(
        exceptions.TokenVerificationFailed,
        lambda: kloudless.application.verify_token(APPLICATION_ID + "0", BEARER_TOKEN),
    )


def check_list_accounts():
    client = Client(api_key=API_KEY)
    listed = client.get("accounts")
    assert isinstance(listed, ResourceList), "accounts are a ResourceList: {!r}".format(listed)
    assert not listed.is_retrieving_events
    ids = [account.data["id"] for account in listed]
    assert ids == [ACCOUNT_ID], "the application's accounts: {}".format(ids)
    first = listed.objects[0]
    assert isinstance(first, Resource)
    assert first.url.endswith("/v1/accounts/{}".format(ACCOUNT_ID)), first.url
    # A listed account is a resource: `refresh` fetches it through its own URL.
    first.refresh()
    assert first.data["id"] == ACCOUNT_ID and first.data["type"] == "account", first.data
    paged = [account.data["id"] for account in listed.get_paging_iterator()]
    assert paged == [ACCOUNT_ID], "the paging iterator ends after the last page: {}".format(paged)

    # Several pages: connect a second account, then page with page_size=1; the iterator
    # follows `next_page` and stops on its `null`.
    with tempfile.TemporaryDirectory() as directory:
        second = client.post("accounts", json={"service": "local", "config": {"path": directory}})
        assert isinstance(second, Resource) and second.response.status_code == 201, second
        assert second.data["bearer_token"]["key"], "a new account's token is shown once"
        first_page = client.get("accounts", params={"page_size": 1})
        assert first_page.data["next_page"] == 2, first_page.data
        paged = [a.data["id"] for a in first_page.get_paging_iterator()]
        assert sorted(paged) == sorted([ACCOUNT_ID, second.data["id"]]), paged
        capped = list(first_page.get_paging_iterator(max_resources=1))
        assert len(capped) == 1, capped
        second.delete()
        expect_exception(exceptions.NotFoundException, second.refresh)
    ids = [account.data["id"] for account in client.get("accounts")]
    assert ids == [ACCOUNT_ID], ids
    # With a bearer token, the account itself.
    me = Account(token=BEARER_TOKEN).get()
    assert isinstance(me, Resource) and me.data["id"] == ACCOUNT_ID, me


def check_subscriptions():
    for how, account in accounts():
        listed = account.get("subscriptions")
        assert isinstance(listed, ResourceList), "{}: {!r}".format(how, listed)
        ids = [subscription.data["id"] for subscription in listed]
        assert ids == [SUBSCRIPTION_ID], "{}: subscriptions {}".format(how, ids)
        paged = [s.data["id"] for s in listed.get_paging_iterator()]
        assert paged == [SUBSCRIPTION_ID], "{}: paging iterator {}".format(how, paged)

        default = account.get("subscriptions/default")
        assert isinstance(default, Resource), "{}: {!r}".format(how, default)
        assert default.data["default"] is True, "{}: {}".format(how, default.data)
        assert default.data["id"] == SUBSCRIPTION_ID, "{}: {}".format(how, default.data)
        assert default.data["type"] == "subscription" and default.data["api"] == "activity"

        by_id = account.get("subscriptions/{}".format(SUBSCRIPTION_ID))
        assert by_id.data["id"] == SUBSCRIPTION_ID
        by_id.refresh()
        assert by_id.data["id"] == SUBSCRIPTION_ID


def follow_activity(account, **request_kwargs):
    """List Activity followed by cursor, storing each page's cursor, until a page is empty."""
    ids, cursor, pages = [], None, 0
    while True:
        page = account.get(
            "subscriptions/default/activity",
            params={"page_size": PAGE_SIZE, "cursor": cursor},
            **request_kwargs
        )
        assert isinstance(page, ResourceList), repr(page)
        assert page.data["type"] == "object_list" and page.data["api"] == "activity", page.data
        assert not page.is_retrieving_events
        assert len(page.objects) <= PAGE_SIZE, "page_size is respected"
        cursor = page.data["cursor"]
        assert isinstance(cursor, str) and cursor, "every page has a cursor: {}".format(page.data)
        pages += 1
        assert pages <= len(EXPECTED_IDS) + 2, "the cursor does not advance"
        if not page.objects:
            return ids, cursor, pages
        for activity in page:
            assert activity.data["type"] == "activity", activity.data
            ids.append(activity.data["id"])


def check_list_activity():
    for how, account in accounts():
        for version in (None, 2):
            kwargs = {} if version is None else {"api_version": version}
            ids, cursor, pages = follow_activity(account, **kwargs)
            label = "{}, {}".format(how, "v2" if version else "v1")
            assert ids == EXPECTED_IDS, "{}: every activity once, in order: {}".format(label, ids)
            assert pages == -(-len(EXPECTED_IDS) // PAGE_SIZE) + 1, "{}: {} pages".format(label, pages)
            # The stored cursor is where new activity will appear: nothing yet.
            again = account.get(
                "subscriptions/default/activity", params={"cursor": cursor}, **kwargs
            )
            assert not again.objects, "{}: {}".format(label, again.data)
        # `after-auth` starts at the beginning of the stream.
        start = account.get(
            "subscriptions/{}/activity".format(SUBSCRIPTION_ID),
            params={"cursor": "after-auth", "page_size": 1},
        )
        assert [a.data["id"] for a in start] == EXPECTED_IDS[:1], start.data


def check_events():
    for how, account in accounts():
        first = account.get("events", params={"page_size": PAGE_SIZE})
        assert isinstance(first, ResourceList), "{}: {!r}".format(how, first)
        assert first.is_retrieving_events, "{}: the SDK recognises an event list".format(how)
        assert len(first.objects) == min(PAGE_SIZE, len(EXPECTED_IDS)), first.data
        events = list(first.get_paging_iterator())
        ids = [event.data["id"] for event in events]
        assert ids == EXPECTED_IDS, "{}: every event once, in order: {}".format(how, ids)
        assert all(e.data["type"] == "add" and e.data["action"] == "+" for e in events), events[0].data
        assert all(e.data["account"] == ACCOUNT_ID for e in events), events[0].data
        latest_cursor = first.latest_cursor
        assert isinstance(latest_cursor, str) and latest_cursor, (
            "{}: get_paging_iterator sets latest_cursor: {!r}".format(how, latest_cursor)
        )

        latest = account.get("events/latest")
        cursor = latest.data["cursor"]
        assert isinstance(cursor, str) and cursor, "{}: events/latest: {}".format(how, latest.data)
        for label, start in (("latest", cursor), ("latest_cursor", latest_cursor)):
            fresh = account.get("events", params={"cursor": start})
            assert fresh.is_retrieving_events
            assert not fresh.objects, "{}: nothing after {}: {}".format(how, label, fresh.data)
            assert list(fresh.get_paging_iterator()) == []


def check_create_and_delete_subscription():
    client = Client(api_key=API_KEY)
    account = Account(api_key=API_KEY, account_id=ACCOUNT_ID)
    body = {"subscription_type": "changes", "active": True, "default": False}

    # One subscription per account by default: the limit surfaces as an APIException.
    error = expect_exception(
        exceptions.APIException, lambda: account.post("subscriptions", json=body)
    )
    assert error.status == 409, "{}: {}".format(error.status, error.error_data)

    # Client.patch(path, data=None, **kwargs) names only `data`, but `json=` reaches requests
    # through **kwargs and is sent as JSON.
    application = client.patch("application", json={"max_subscriptions_per_account": 2})
    assert application.data["max_subscriptions_per_account"] == 2, application.data
    # The documented `data=` argument, as a JSON string with its Content-Type, works too.
    application = client.patch(
        "application",
        data=json.dumps({"max_subscriptions_per_account": 2}),
        headers={"Content-Type": "application/json"},
    )
    assert application.data["max_subscriptions_per_account"] == 2, application.data
    assert client.get("application").data["max_subscriptions_per_account"] == 2

    created = account.post("subscriptions", json=body)
    assert isinstance(created, Resource), repr(created)
    assert created.response.status_code == 201, created.response.status_code
    new_id = created.data["id"]
    assert new_id != SUBSCRIPTION_ID and created.data["default"] is False, created.data
    assert created.url.endswith("/accounts/{}/subscriptions/{}".format(ACCOUNT_ID, new_id)), created.url
    listed = sorted(s.data["id"] for s in account.get("subscriptions"))
    assert listed == sorted([SUBSCRIPTION_ID, new_id]), listed
    assert account.get("subscriptions/default").data["id"] == SUBSCRIPTION_ID

    created.delete()
    expect_exception(
        exceptions.NotFoundException, lambda: account.get("subscriptions/{}".format(new_id))
    )
    expect_exception(exceptions.NotFoundException, created.refresh)
    listed = [s.data["id"] for s in account.get("subscriptions")]
    assert listed == [SUBSCRIPTION_ID], listed


def check_errors():
    for account in (Account(token="bogus"), Account(api_key="bogus", account_id=ACCOUNT_ID)):
        error = expect_exception(
            exceptions.AuthorizationException, lambda: account.get("subscriptions")
        )
        assert error.status == 401, error.status
        assert error.error_data.get("type") == "error", error.error_data
    expect_exception(
        exceptions.AuthorizationException,
        lambda: kloudless.application.verify_token(APPLICATION_ID, "bogus"),
    )

    for how, account in accounts():
        for path in ("subscriptions/default/activity", "events"):
            error = expect_exception(
                exceptions.APIException,
                lambda: account.get(path, params={"cursor": "not-a-cursor"}),
            )
            assert type(error) is exceptions.APIException, "{}: {!r}".format(how, error)
            assert error.status == 400, "{} {}: {}".format(how, path, error.status)
            assert error.error_data["status_code"] == 400, error.error_data
            assert error.error_data["error_code"] == "invalid_parameters", error.error_data

    other = int(ACCOUNT_ID) + 1000
    expect_exception(
        exceptions.NotFoundException,
        lambda: Account(api_key=API_KEY, account_id=other).get("subscriptions"),
    )


def check_trailing_slashes():
    for how, account in accounts():
        listed = account.get("subscriptions/")
        assert [s.data["id"] for s in listed] == [SUBSCRIPTION_ID], "{}: {}".format(how, listed.data)
        default = account.get("subscriptions/default/")
        assert default.data["id"] == SUBSCRIPTION_ID, default.data
        page = account.get("subscriptions/default/activity/", params={"page_size": 1})
        assert [a.data["id"] for a in page] == EXPECTED_IDS[:1], page.data
        events = account.get("events/", params={"page_size": PAGE_SIZE})
        assert events.is_retrieving_events, "the SDK's events pattern allows `events/`"
        assert [e.data["id"] for e in events.get_paging_iterator()] == EXPECTED_IDS
    accounts_page = Client(api_key=API_KEY).get("accounts/")
    assert [a.data["id"] for a in accounts_page] == [ACCOUNT_ID], accounts_page.data


CHECKS = [
    check_verify_token,
    check_list_accounts,
    check_subscriptions,
    check_list_activity,
    check_events,
    check_create_and_delete_subscription,
    check_errors,
    check_trailing_slashes,
]


def main():
    assert EXPECTED_IDS, "EXPECTED_IDS is empty"
    failed = []
    for check in CHECKS:
        try:
            check()
        except Exception as error:  # report every failing check, not only the first
            failed.append(check.__name__)
            print("FAIL {}: {}: {}".format(check.__name__, type(error).__name__, error))
            traceback.print_exc()
        else:
            print("ok   {}".format(check.__name__))
    if failed:
        print("{} of {} checks failed: {}".format(len(failed), len(CHECKS), ", ".join(failed)))
        return 1
    print("all {} checks passed".format(len(CHECKS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
