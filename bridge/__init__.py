"""partnero-bridge: payment-provider webhooks in, Partnero transactions out, exactly once."""

__version__ = "0.1.0"
