"""A TF-Serving-compatible model server for SEED's exports (see docs/serving.md).

Import its modules (seed.serving.config, .models, .core, ...) directly: this
file imports nothing, so using one module does not load the whole server.
"""
