"""tsq on several processes: NATS JetStream carries loop changes, runs and leadership;
the runs themselves stay in the shared database (PostgreSQL). See docs/scale-out.md."""
