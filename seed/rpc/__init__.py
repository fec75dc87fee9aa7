"""What seed.grpc stands on: building and caching the C++ op (build_op), tensor wire framing (wire)."""
