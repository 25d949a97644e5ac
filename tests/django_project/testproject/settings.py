"""Settings of the test project: django-rq queues on the test Redis, late-ack workers, fast leases.

The tests point it at their Redis with ``TESTPROJECT_REDIS_URL``, and change any setting for one
run with ``TESTPROJECT_SETTINGS``, a JSON object of setting name -> value.
"""

import json
import os
from urllib.parse import urlparse

SECRET_KEY = 'rq-acklate tests only'
DEBUG = False
USE_TZ = True
DATABASES: dict[str, dict[str, str]] = {}
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'

INSTALLED_APPS = [
    'django.contrib.contenttypes',
    'django.contrib.auth',
    'django_rq',
    'rq_acklate.contrib.django',
    'shop',
]

REDIS_URL = os.environ.get('TESTPROJECT_REDIS_URL', 'redis://127.0.0.1:1/0')  # port 1: nothing, unless told
_parsed = urlparse(REDIS_URL)
_other_db = int((_parsed.path or '/0').strip('/') or 0) + 1
OTHER_REDIS_URL = _parsed._replace(path=f'/{_other_db}').geturl()

RQ_QUEUES = {
    'default': {'URL': REDIS_URL},
    'high': {'URL': REDIS_URL},
    'low': {'URL': REDIS_URL},
    'other': {'URL': OTHER_REDIS_URL},  # another database: a second connection for --queue/--all
}

RQ = {'WORKER_CLASS': 'rq_acklate.LateAckWorker'}

RQ_ACKLATE = {
    # Fast, so a SIGKILLed worker is found dead within seconds.
    'LIVENESS_TTL': 2,
    'HEARTBEAT_INTERVAL': 0.5,
    'RECOVERY_INTERVAL': 0.5,
    'MAX_REDELIVERIES': 3,
    'DEFAULT_POLICY': 'early',
    'LATE_ACK': ['shop.tasks.legacy_*'],
    'IDEMPOTENT': ['shop.tasks.legacy_rebuild'],
    'SIGNALS_TO_LOG': True,
}

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {'plain': {'format': '%(name)s %(levelname)s %(message)s'}},
    'handlers': {'stderr': {'class': 'logging.StreamHandler', 'formatter': 'plain'}},
    'loggers': {'rq_acklate': {'handlers': ['stderr'], 'level': 'INFO', 'propagate': False}},
}

for _name, _value in json.loads(os.environ.get('TESTPROJECT_SETTINGS') or '{}').items():
    globals()[_name] = _value
