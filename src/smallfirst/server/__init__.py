"""The HTTP service: OpenAI- and Anthropic-compatible endpoints, admin API, metrics.

    from smallfirst.server import create_app, serve
"""

from smallfirst.server.app import SERVICE, Service, create_app, serve

__all__ = ["SERVICE", "Service", "create_app", "serve"]
