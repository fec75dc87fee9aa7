"""A TF-Serving-compatible model server for SEED's exports (see docs/serving.md).

Import the modules themselves (seed.serving.config, .models, .core, ...): this
package imports nothing, so importing one module does not load the others.
"""
