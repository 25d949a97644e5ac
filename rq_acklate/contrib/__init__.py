"""Integrations with frameworks. Each one is optional: the base package never imports them."""
