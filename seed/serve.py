"""Serves exported policies (SavedModels) with TF Serving's gRPC and REST APIs.

    python -m seed.serve --model_name pong --model_base_path runs/pong/export \\
        --port 8500 --rest_api_port 8501
    python -m seed.serve --model_config_file models.config [--enable_batching]

The manual (config files, versions, REST formats, batching, errors, recurrent
policies, tensor-RPC binding) is docs/serving.md; the code is seed/serving/.
"""

from seed.serving.main import run

if __name__ == "__main__":
  run()
