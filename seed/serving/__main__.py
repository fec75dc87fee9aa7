"""Serves exported policies (SavedModels) with TF Serving's gRPC and REST APIs.

    python -m seed.serving --model_name pong --model_base_path runs/pong/export
    python -m seed.serving --model_config_file models.config [--enable_batching]

Same program as `python -m seed.serve`; the manual is docs/serving.md.
"""

from seed.serving.main import run

if __name__ == "__main__":
  run()
