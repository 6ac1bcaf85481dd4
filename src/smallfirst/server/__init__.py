"""The HTTP service: OpenAI- and Anthropic-compatible endpoints, admin API, metrics.

    from smallfirst.server.app import create_app, serve

    app               the service: routes, request handling, readiness
    wire              what the two wire formats share
    openai_wire       OpenAI's /v1/chat/completions format
    anthropic_wire    Anthropic's /v1/messages format
    frontier          one request's exchange with the frontier model
    auto              smallfirst/auto: which task a request asks for
    admin             the admin API (kill switch, rollout, policy reload)
    access            who may read the dashboard and who may change the service
    dashboard_routes  the operator dashboard
    openapi           GET /openapi.json
    learning          the learn schedule of a service with `learn: {every: N}`

This file imports nothing, so the modules here can import each other without waiting on it.
"""
