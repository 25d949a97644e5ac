"""Decorators and policy resolution."""

from __future__ import annotations

import pickle

import pytest
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from rq_acklate import ConfigurationError, Policy, Settings, idempotent, late_ack, policy_meta
from rq_acklate.policy import SAFE_POLICY, PolicyResolver, marks_of, peek_function_name

import jobs


def settings(**overrides):
    return Settings.load(kwargs=overrides, environ={}, django={})


def test_decorated_function_stays_a_plain_function():
    @late_ack
    def double(x):
        """Doubles."""
        return 2 * x

    assert double(4) == 8
    assert double.__name__ == 'double'
    assert double.__doc__ == 'Doubles.'
    assert jobs.idempotent_job.__module__ == 'jobs'
    assert jobs.idempotent_job.__qualname__ == 'idempotent_job'


def test_decorators_stack_in_either_order():
    @late_ack
    @idempotent
    def a():
        pass

    @idempotent
    @late_ack
    def b():
        pass

    @late_ack(idempotent=True, max_redeliveries=5)
    def c():
        pass

    assert marks_of(a) == {'late_ack': True, 'idempotent': True}
    assert marks_of(b) == {'late_ack': True, 'idempotent': True}
    assert marks_of(c) == {'late_ack': True, 'idempotent': True, 'max_redeliveries': 5}
    assert marks_of(lambda: None) == {}


def test_marked_functions_are_listed():
    from rq_acklate.policy import marked_functions

    assert marked_functions()['jobs.poison_job'] == {'late_ack': True, 'idempotent': True, 'max_redeliveries': 2}
    assert 'jobs.plain_job' not in marked_functions()


def test_decorator_rejects_bad_max_redeliveries_and_unmarkable_callables():
    with pytest.raises(ConfigurationError, match='max_redeliveries'):
        late_ack(max_redeliveries=-1)
    with pytest.raises(TypeError, match='cannot mark'):
        late_ack(len)


def test_policy_code_round_trips():
    for policy in (Policy(), Policy(True, True, 5), Policy(True, False, 0)):
        assert Policy.from_code(policy.to_code()) == policy
    with pytest.raises(ValueError):
        Policy.from_code('XX1')


def test_resolution_order_meta_over_marks_over_patterns_over_default(connection):
    queue = Queue(connection=connection)
    resolver = PolicyResolver(settings(late_ack=['jobs.plain_*'], max_redeliveries=4))

    decorated = queue.enqueue(jobs.idempotent_job)
    assert resolver.resolve(decorated) == Policy(late_ack=True, idempotent=True, max_redeliveries=4)

    poison = queue.enqueue(jobs.poison_job)
    assert resolver.resolve(poison) == Policy(late_ack=True, idempotent=True, max_redeliveries=2)

    by_pattern = queue.enqueue(jobs.plain_job)
    assert resolver.resolve(by_pattern) == Policy(late_ack=True, idempotent=False, max_redeliveries=4)

    default = queue.enqueue(jobs.undecorated)
    assert resolver.resolve(default) == Policy(late_ack=False, idempotent=False, max_redeliveries=4)

    overridden = queue.enqueue(jobs.idempotent_job, meta=policy_meta(idempotent=False, max_redeliveries=1))
    assert resolver.resolve(overridden) == Policy(late_ack=True, idempotent=False, max_redeliveries=1)

    early_by_meta = queue.enqueue(jobs.plain_job, meta=policy_meta(late_ack=False))
    assert resolver.resolve(early_by_meta).late_ack is False


def test_default_policy_late_applies_to_undecorated_jobs(connection):
    job = Queue(connection=connection).enqueue(jobs.undecorated)
    assert PolicyResolver(settings(default_policy='late')).resolve(job).late_ack is True


def test_unimportable_function_gets_the_safe_default(connection):
    job = Queue(connection=connection).enqueue('no_such_module.nowhere')
    resolver = PolicyResolver(settings())
    assert resolver.resolve(job) == SAFE_POLICY
    assert SAFE_POLICY.late_ack and not SAFE_POLICY.idempotent


def test_invalid_meta_override_is_ignored_not_fatal(connection):
    queue = Queue(connection=connection)
    resolver = PolicyResolver(settings())
    job = queue.enqueue(jobs.idempotent_job, meta={'acklate': 'yes please'})
    assert resolver.resolve(job) == Policy(True, True, 3)
    job = queue.enqueue(jobs.idempotent_job, meta=policy_meta() | {'acklate': {'max_redeliveries': 'lots'}})
    assert resolver.resolve(job).max_redeliveries == 3


class Exploding:
    """Unpickling this raises: proof that policy resolution never unpickles arguments."""

    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise AssertionError('the arguments were unpickled')


def test_function_name_is_read_without_unpickling_arguments(connection):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, Exploding())
    fetched = Job.fetch(job.id, connection=connection)
    assert peek_function_name(fetched.data, fetched.serializer) == 'jobs.idempotent_job'
    assert PolicyResolver(settings()).resolve(fetched).idempotent is True
    with pytest.raises(Exception):  # noqa: B017 - the control: a full deserialization does run it
        pickle.loads(fetched.data)


def test_function_name_is_read_from_json_jobs(connection):
    queue = Queue(connection=connection, serializer=JSONSerializer)
    job = queue.enqueue(jobs.late_job, 1, result='x')
    fetched = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert peek_function_name(fetched.data, fetched.serializer) == 'jobs.late_job'
    assert PolicyResolver(settings()).resolve(fetched) == Policy(True, False, 3)


def test_policy_is_cached_per_function(connection):
    imports = []

    def importer(name):
        imports.append(name)
        from rq.utils import import_attribute

        return import_attribute(name)

    resolver = PolicyResolver(settings(), importer=importer)
    queue = Queue(connection=connection)
    for _ in range(5):
        resolver.resolve(queue.enqueue(jobs.idempotent_job))
    assert imports == ['jobs.idempotent_job']


def test_garbage_data_gets_the_safe_default(connection):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    connection.hset(job.key, 'data', b'\x00not a pickle')
    fetched = Job.fetch(job.id, connection=connection)
    assert PolicyResolver(settings()).resolve(fetched) == SAFE_POLICY
