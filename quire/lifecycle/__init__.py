"""Lifecycle automations: onboarding, exit and transfer playbooks, run step by step over the
real protocols of the systems a person's accounts live in (SCIM, SMTP, chat webhooks,
iCalendar), with durable compensation, circuit breakers and a dead-letter queue."""
