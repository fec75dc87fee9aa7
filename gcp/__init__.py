"""Cloud jobs: one config on Vertex AI (vertex.py) or Kubernetes/GKE (kubernetes.py), started in each
container by entrypoint.py, which reads its role from the engine (cluster.py). Image: gcp/Dockerfile."""
