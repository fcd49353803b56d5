"""RequestContext: attributes, report(), the current-context variable, and who receives it."""

from __future__ import annotations

import contextvars
import functools
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from flask_integrations.pipeline.context import RequestContext, activate, current_context, wants_context

SECRET = "sk_live_do_not_show"


def integration():
    return SimpleNamespace(id=7, provider="stripe", credentials_dict=lambda: {"api_key": SECRET})


def make(**kwargs) -> RequestContext:
    return RequestContext(integration=integration(), **kwargs)


# -- attributes and report -----------------------------------------------------


def test_a_new_context_carries_the_call_and_nothing_reported():
    ctx = make(idempotency_key="create-issue:42", attempt=2)
    assert (ctx.idempotency_key, ctx.attempt, ctx.request_id) == ("create-issue:42", 2, None)
    assert ctx.integration.id == 7
    assert (ctx.provider_request_id, ctx.rate_limit_remaining, ctx.rate_limit_reset_at, ctx.retry_after) == (
        None,
        None,
        None,
        None,
    )
    assert ctx.reports == {}


def test_attempt_defaults_to_one():
    assert make().attempt == 1


def test_report_stores_what_was_reported():
    ctx = make()
    reset = datetime(2026, 1, 1, tzinfo=UTC)
    ctx.report(
        provider_request_id="req_123", rate_limit_remaining=0, rate_limit_reset_at=reset, retry_after=5
    )
    assert ctx.provider_request_id == "req_123"
    assert ctx.rate_limit_remaining == 0
    assert ctx.rate_limit_reset_at == reset
    assert ctx.retry_after == 5
    assert ctx.reports == {
        "provider_request_id": "req_123",
        "rate_limit_remaining": 0,
        "rate_limit_reset_at": reset,
        "retry_after": 5,
    }


def test_later_reports_merge_over_earlier_ones():
    ctx = make()
    ctx.report(provider_request_id="req_1", rate_limit_remaining=10)
    ctx.report(rate_limit_remaining=9)
    assert ctx.reports == {"provider_request_id": "req_1", "rate_limit_remaining": 9}
    assert ctx.provider_request_id == "req_1"


def test_report_with_none_leaves_a_value_as_it_was():
    ctx = make()
    ctx.report(retry_after=3)
    ctx.report(retry_after=None)
    assert ctx.retry_after == 3


def test_report_accepts_keyword_arguments_in_the_spec_names():
    ctx = make()
    ctx.report(
        provider_request_id="r", rate_limit_remaining=1, rate_limit_reset_at=1700000000, retry_after=2.5
    )
    assert ctx.rate_limit_reset_at == 1700000000


def test_the_builder_can_set_the_request_id():
    ctx = make()
    ctx.request_id = 99
    assert ctx.request_id == 99


def test_repr_names_the_call_without_credentials():
    text = repr(make(idempotency_key="k-1", attempt=3))
    assert "stripe" in text and "7" in text and "attempt=3" in text and "k-1" in text
    assert SECRET not in text


# -- current context -----------------------------------------------------------


def test_current_context_is_none_outside_a_call():
    assert current_context() is None


def test_activate_makes_the_context_current_inside_the_block_only():
    ctx = make()
    with activate(ctx) as active:
        assert active is ctx
        assert current_context() is ctx
    assert current_context() is None


def test_nested_activation_restores_the_outer_context():
    outer, inner = make(attempt=1), make(attempt=2)
    with activate(outer):
        with activate(inner):
            assert current_context() is inner
        assert current_context() is outer


def test_activation_is_undone_when_the_call_raises():
    with pytest.raises(RuntimeError), activate(make()):
        raise RuntimeError("upstream failed")
    assert current_context() is None


def test_the_context_does_not_leak_into_an_unrelated_context_copy():
    fresh = contextvars.Context()
    with activate(make()):
        assert fresh.run(current_context) is None


# -- who receives the context --------------------------------------------------


def test_a_function_with_a_required_parameter_wants_the_context():
    def create_customer(ctx):
        return ctx

    assert wants_context(create_customer)


def test_a_function_without_parameters_does_not():
    assert not wants_context(lambda: None)


def test_a_parameter_with_a_default_is_not_required():
    assert not wants_context(lambda ctx=None: ctx)


def test_star_args_alone_does_not_want_the_context():
    assert not wants_context(lambda *args, **kwargs: None)


def test_a_required_keyword_only_parameter_is_not_positional():
    def fn(*, ctx):
        return ctx

    assert not wants_context(fn)


def test_a_bound_method_does_not_count_self():
    class Client:
        def fetch(self):
            return None

        def create(self, ctx):
            return ctx

    assert not wants_context(Client().fetch)
    assert wants_context(Client().create)


def test_a_callable_object_is_judged_by_its_call_method():
    class Operation:
        def __call__(self, ctx):
            return ctx

    assert wants_context(Operation())


def test_a_partial_counts_only_what_is_left_to_pass():
    def charge(amount, ctx):
        return amount, ctx

    assert wants_context(functools.partial(charge, 100))
    assert not wants_context(functools.partial(charge, 100, None))


def test_a_partial_given_the_parameter_by_keyword_does_not_want_it():
    def charge(ctx):
        return ctx

    assert not wants_context(functools.partial(charge, ctx=None))


def test_a_builtin_without_a_signature_does_not_want_the_context():
    assert not wants_context(dict)
