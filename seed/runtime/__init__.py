"""A training run: learner, actors, the per-env store, the launcher, runtime config and the Agent interface."""
