"""A Django project whose django-rq workers ack late. The rq-acklate parts are marked below."""

import os

SECRET_KEY = 'example only'
DEBUG = True
USE_TZ = True
DATABASES: dict[str, dict[str, str]] = {}  # the example needs none

INSTALLED_APPS = [
    'django_rq',
    'rq_acklate.contrib.django',  # rq-acklate: system checks, `manage.py rqacklate`, signal logging
    'shop',
]

REDIS_URL = os.environ.get('REDIS_URL', 'redis://localhost:6379/0')
RQ_QUEUES = {
    'high': {'URL': REDIS_URL},
    'default': {'URL': REDIS_URL},
    'low': {'URL': REDIS_URL},
}

# rq-acklate: `manage.py rqworker` (and rqworker-pool) run late-ack workers.
RQ = {'WORKER_CLASS': 'rq_acklate.LateAckWorker'}

# rq-acklate: worker settings. RQ_ACKLATE_* environment variables override them.
RQ_ACKLATE = {
    'LIVENESS_TTL': 6,  # a worker silent for 6 s is dead (default 15)
    'HEARTBEAT_INTERVAL': 2,
    'RECOVERY_INTERVAL': 2,
    'MAX_REDELIVERIES': 3,
    'DEFAULT_POLICY': 'early',  # undecorated jobs keep RQ's behaviour
    'LATE_ACK': ['shop.legacy.*'],  # functions you cannot decorate
    'IDEMPOTENT': ['shop.legacy.rebuild_*'],
    'SIGNALS_TO_LOG': True,  # every rq-acklate event to the `rq_acklate.events` logger
}

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {'plain': {'format': '%(asctime)s %(name)s %(levelname)s %(message)s'}},
    'handlers': {'console': {'class': 'logging.StreamHandler', 'formatter': 'plain'}},
    'loggers': {'rq_acklate': {'handlers': ['console'], 'level': 'INFO', 'propagate': False}},
}
