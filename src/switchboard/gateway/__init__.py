"""The gateway: public model names → deployments (the local engine or upstream providers), with
load balancing, retries, fallbacks, cooldown, and usage, timing and cost on every answer.
No web framework here; the HTTP layer calls ``ProviderRouter``."""

