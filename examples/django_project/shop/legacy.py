"""Functions you cannot decorate (imagine a vendored library): RQ_ACKLATE's patterns mark them."""


def rebuild_index(name):
    return f'rebuilt {name}'  # late ack and idempotent, from 'shop.legacy.*' and 'shop.legacy.rebuild_*'
