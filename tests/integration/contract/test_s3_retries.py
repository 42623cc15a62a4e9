"""One S3 retry layer: a call to a real SeaweedFS that goes away mid-call is tried `S3_MAX_ATTEMPTS` times in
all, by botocore alone, and not again by `ObjectStore` or by the flows' Prefect task retries."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from shelfcast.contract.objects import S3_MAX_ATTEMPTS, ObjectStore

pytestmark = pytest.mark.integration


@pytest.fixture
def doomed_s3(own_s3):
    """Settings on a SeaweedFS server of this test alone, and a `stop_on_first_request(store)` that makes the
    server stop as the store's first HTTP request goes out; returns the list every request is counted in."""
    settings, service, _ = own_s3
    registered = []

    def stop_on_first_request(store: ObjectStore) -> list[str]:
        sent = []

        def count(request, **_):
            if service.alive():
                service.stop()  # the server is gone while the call is under way
            sent.append(request.url)

        store.client.meta.events.register("before-send.s3", count)
        registered.append((store.client, count))
        return sent

    yield settings, stop_on_first_request
    for client, handler in registered:  # clients live as long as the process (`make_s3_client` keeps them)
        client.meta.events.unregister("before-send.s3", handler)


def test_a_failing_call_is_tried_s3_max_attempts_times_in_all(doomed_s3):
    settings, stop_on_first_request = doomed_s3
    store = ObjectStore.from_settings(settings)
    store.put("landing/a.csv", b"date,store,item,sales\n")
    sent = stop_on_first_request(store)
    with pytest.raises(EndpointConnectionError):
        store.get("landing/a.csv")
    assert S3_MAX_ATTEMPTS > 1 and len(sent) == S3_MAX_ATTEMPTS  # botocore's tries, nothing stacked on top
    assert set(sent) == {sent[0]}  # the same request each time


def test_a_flow_task_does_not_retry_what_the_s3_client_already_retried(doomed_s3, prefect_api):
    from prefect import flow

    from shelfcast.data.ingest import open_landing
    from shelfcast.flows.ingest import list_pending  # the flows' I/O retries (2 retries on transient I/O)

    settings, stop_on_first_request = doomed_s3
    store = ObjectStore.from_settings(settings)
    store.put("landing/a.csv", b"date,store,item,sales\n")
    sent = stop_on_first_request(store)

    @flow(name="s3-retry-layers")
    def one_listing():
        return list_pending(open_landing("landing/", store))

    state = one_listing(return_state=True)
    assert state.is_failed()
    assert len(sent) == S3_MAX_ATTEMPTS  # 3 task tries x 3 client tries x 3 store tries before: 27
