"""Job functions, marked with rq-acklate's decorators."""

import time

from rq_acklate import idempotent, late_ack, redeliveries


@late_ack
@idempotent
def resize(image_id, seconds=0):
    """Safe to run twice: if its worker dies, it runs again on another one."""
    time.sleep(float(seconds))
    return f'resized {image_id} (redelivery {redeliveries()})'


@late_ack
def charge(order_id):
    """Not safe to run twice: if its worker dies mid-run, it fails with a "worker lost" reason."""
    return f'charged {order_id}'
