"""Job functions for the basic example: one of each policy."""

from __future__ import annotations

import time

from rq_acklate import idempotent, late_ack, redeliveries


@late_ack
@idempotent
def resize_image(image_id: int) -> str:
    """Safe to run twice: redelivered if its worker dies mid-run."""
    time.sleep(0.2)
    return f'image {image_id} resized (redeliveries so far: {redeliveries()})'


@late_ack
def charge_card(order_id: int) -> str:
    """Not safe to run twice: failed with a "worker lost" reason if its worker dies mid-run."""
    time.sleep(0.2)
    return f'order {order_id} charged'


def send_newsletter(issue: int) -> str:
    """Unmarked: early ack, plain RQ behaviour."""
    return f'newsletter {issue} sent'
