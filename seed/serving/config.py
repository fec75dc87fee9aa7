"""Which models to serve: ModelServerConfig text protos -> ModelConfigs and their version policies."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """One served model: where its versions live and which of them to serve."""

  name: str
  base_path: str
  policy: str = "latest"  # "latest", "all" or "specific"
  num_versions: int = 1  # for "latest"
  versions: frozenset = frozenset()  # for "specific"
  labels: tuple = ()  # ((label, version), ...)

  def aspired(self, available: list[int]) -> set[int]:
    """The versions this policy serves among `available` (loadable) ones."""
    if self.policy == "all":
      return set(available)
    if self.policy == "specific":
      return set(available) & set(self.versions)
    return set(sorted(available)[-self.num_versions :])


def model_configs(proto: model_server_config_pb2.ModelServerConfig) -> list[ModelConfig]:
  """ModelConfigs from a ModelServerConfig proto; ValueError for what we cannot serve."""
  if proto.HasField("custom_model_config"):
    raise ValueError("custom_model_config is not supported; use model_config_list")
  configs, names = [], set()
  for c in proto.model_config_list.config:
    if not c.name:
      raise ValueError("every model config needs a name")
    if c.name in names:
      raise ValueError(f"model {c.name!r} is configured twice")
    names.add(c.name)
    if not c.base_path:
      raise ValueError(f"model {c.name!r} has no base_path")
    if c.model_platform not in ("", "tensorflow"):
      raise ValueError(f"model {c.name!r}: model_platform {c.model_platform!r} is not supported (only 'tensorflow')")
    policy = c.model_version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    num = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions > 0 else 1
    if kind == "specific" and not policy.specific.versions:
      raise ValueError(f"model {c.name!r}: the 'specific' version policy lists no versions")
    configs.append(
      ModelConfig(
        name=c.name,
        base_path=os.path.abspath(os.path.expanduser(c.base_path)),
        policy=kind,
        num_versions=num,
        versions=frozenset(policy.specific.versions),
        labels=tuple(sorted(c.version_labels.items())),
      )
    )
  return configs


def config_text(base_paths: Mapping[str, str]) -> str:
  """A --model_config_file text serving each model name from its base path (TensorFlow SavedModels,
  the default version policy: the newest)."""
  proto = model_server_config_pb2.ModelServerConfig()
  for name, base_path in base_paths.items():
    proto.model_config_list.config.add(name=name, base_path=os.fspath(base_path), model_platform="tensorflow")
  return text_format.MessageToString(proto)


def parse_config_text(text: str) -> list[ModelConfig]:
  proto = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise ValueError(f"cannot parse the model config: {e}") from e
  return model_configs(proto)
