"""Django integration: put ``'rq_acklate.contrib.django'`` in ``INSTALLED_APPS``.

It brings system checks (``rq_acklate.E001``, ``W001``, ``W002``), the ``rqacklate`` management
command, and, with ``RQ_ACKLATE['SIGNALS_TO_LOG'] = True``, the signals logged through Django's
``LOGGING``. Workers read ``settings.RQ_ACKLATE`` on their own (see :mod:`rq_acklate.settings`):
``RQ = {'WORKER_CLASS': 'rq_acklate.LateAckWorker'}`` is all ``manage.py rqworker`` needs.

Needs ``pip install "rq-acklate[django]"`` (Django and django-rq).
"""
