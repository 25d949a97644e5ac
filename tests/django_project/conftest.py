"""The tests under inprocess/ import Django, so they run in a pytest process of their own, started by
tests/test_django.py with ``--ds=testproject.settings``. The main test session never collects them:
its core tests must run without Django imported (rq_acklate.settings reads Django's settings
whenever Django is configured in the process)."""

import os

if not os.environ.get('DJANGO_SETTINGS_MODULE'):
    collect_ignore_glob = ['*']
