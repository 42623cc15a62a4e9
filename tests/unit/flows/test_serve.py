"""Where flow runs report: the configured Prefect server, or a clear error, never a silent temporary server."""

from __future__ import annotations

import pytest

from shelfcast.contract.errors import ServiceError
from shelfcast.flows.serve import use_api
from shelfcast.stack.process import free_port

pytestmark = pytest.mark.unit


def test_a_prefect_address_nobody_answers_is_an_error_that_says_how_to_fix_it():
    address = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(ServiceError) as refused:
        with use_api(address):
            pytest.fail("the block must not run against a dead server")
    assert address in str(refused.value) and "shelfcast stack up" in str(refused.value)


def test_an_empty_address_asks_for_the_temporary_api_on_purpose():
    with use_api("") as on_server:
        assert on_server is False
