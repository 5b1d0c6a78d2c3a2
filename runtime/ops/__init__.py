"""Store operations beside the runtime: the API, the review desk, the POS outbox, the dashboard."""
