"""What this replica of a cloud job is: the learner or an actor host, read from the engine's environment.

Three engines, tried in this order:
  Vertex AI      CLUSTER_SPEC: pool "workerpool0" (1 replica) is the learner,
                 "workerpool1" the actor hosts; task.index is this replica's.
  TF_CONFIG      (Vertex sets it too; other TF cluster launchers): task type
                 "chief" or "master" is the learner (seed_rl #69 met both), "worker" an actor host.
  Kubernetes     an Indexed Job's pods have JOB_COMPLETION_INDEX (actor host index);
                 SEED_LEARNER_SERVICE names the learner's Service, SEED_LEARNER_PORT
                 its port and SEED_ACTOR_HOSTS the Indexed Job's completions. A pod
                 with SEED_LEARNER_SERVICE and no index is the learner.
Anything else is an error naming the variable to set.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

DEFAULT_PORT = 8686


@dataclasses.dataclass(frozen=True)
class Role:
  """This replica's job in the run."""

  learner: bool  # True: run the learner; False: run an actor host
  learner_address: str  # host:port the actors dial (the learner listens on its port)
  actor_hosts: int  # how many actor hosts the run has
  host_index: int  # this actor host's index in [0, actor_hosts); 0 for the learner
  engine: str  # "vertex", "tf_config" or "kubernetes"

  @property
  def port(self) -> int:
    return int(self.learner_address.rsplit(":", 1)[1])


def _json(env: Mapping[str, str], name: str) -> dict:
  try:
    value = json.loads(env[name])
  except json.JSONDecodeError as e:
    raise ValueError(f"{name} is not JSON: {e}") from e
  if (
    not isinstance(value, dict) or not isinstance(value.get("cluster"), dict) or not isinstance(value.get("task"), dict)
  ):
    raise ValueError(f"{name} needs 'cluster' and 'task' objects, got {env[name][:200]!r}")
  return value


def _address(hosts: list, name: str, pool: str) -> str:
  if not isinstance(hosts, list) or len(hosts) != 1 or not isinstance(hosts[0], str):
    raise ValueError(f"{name}: pool {pool!r} must hold exactly one learner address, got {hosts!r}")
  return hosts[0] if ":" in hosts[0] else f"{hosts[0]}:{DEFAULT_PORT}"


def _index(task: dict, name: str, count: int) -> int:
  index = task.get("index", 0)
  if not isinstance(index, int) or not 0 <= index < max(count, 1):
    raise ValueError(f"{name}: task.index must be in [0, {count}), got {index!r}")
  return index


def from_cluster_spec(env: Mapping[str, str]) -> Role:
  spec = _json(env, "CLUSTER_SPEC")
  cluster, task = spec["cluster"], spec["task"]
  learner_address = _address(cluster.get("workerpool0"), "CLUSTER_SPEC", "workerpool0")
  actor_hosts = len(cluster.get("workerpool1", []))
  kind = task.get("type")
  if kind == "workerpool0":
    return Role(True, learner_address, actor_hosts, 0, "vertex")
  if kind == "workerpool1":
    return Role(False, learner_address, actor_hosts, _index(task, "CLUSTER_SPEC", actor_hosts), "vertex")
  raise ValueError(f"CLUSTER_SPEC: task.type {kind!r} is not workerpool0 (learner) or workerpool1 (actor hosts)")


def from_tf_config(env: Mapping[str, str]) -> Role:
  spec = _json(env, "TF_CONFIG")
  cluster, task = spec["cluster"], spec["task"]
  learners = [pool for pool in ("chief", "master") if pool in cluster]
  if len(learners) != 1:
    raise ValueError(f"TF_CONFIG: the cluster needs one 'chief' or 'master' pool (the learner), got {sorted(cluster)}")
  learner_address = _address(cluster[learners[0]], "TF_CONFIG", learners[0])
  actor_hosts = len(cluster.get("worker", []))
  kind = task.get("type")
  if kind in ("chief", "master"):
    return Role(True, learner_address, actor_hosts, 0, "tf_config")
  if kind == "worker":
    return Role(False, learner_address, actor_hosts, _index(task, "TF_CONFIG", actor_hosts), "tf_config")
  raise ValueError(f"TF_CONFIG: task.type {kind!r} is not chief/master (learner) or worker (actor host)")


def from_kubernetes(env: Mapping[str, str]) -> Role:
  service = env["SEED_LEARNER_SERVICE"]
  try:
    port = int(env.get("SEED_LEARNER_PORT", DEFAULT_PORT))
    actor_hosts = int(env["SEED_ACTOR_HOSTS"])
  except KeyError as e:
    raise ValueError(f"{e.args[0]} must be set with SEED_LEARNER_SERVICE (the Indexed Job's completions)") from e
  except ValueError as e:
    raise ValueError(f"SEED_LEARNER_PORT and SEED_ACTOR_HOSTS must be integers: {e}") from e
  address = f"{service}:{port}"
  if "JOB_COMPLETION_INDEX" not in env:
    return Role(True, address, actor_hosts, 0, "kubernetes")
  try:
    index = int(env["JOB_COMPLETION_INDEX"])
  except ValueError as e:
    raise ValueError(f"JOB_COMPLETION_INDEX must be an integer, got {env['JOB_COMPLETION_INDEX']!r}") from e
  if not 0 <= index < actor_hosts:
    raise ValueError(f"JOB_COMPLETION_INDEX={index} is not in [0, SEED_ACTOR_HOSTS={actor_hosts})")
  return Role(False, address, actor_hosts, index, "kubernetes")


def detect(env: Mapping[str, str]) -> Role:
  """The role this environment describes; ValueError naming the variable when it describes none."""
  if "CLUSTER_SPEC" in env:
    return from_cluster_spec(env)
  if "TF_CONFIG" in env:
    return from_tf_config(env)
  if "SEED_LEARNER_SERVICE" in env:
    return from_kubernetes(env)
  raise ValueError(
    "no cluster environment: set CLUSTER_SPEC (Vertex AI), TF_CONFIG, or SEED_LEARNER_SERVICE with "
    "SEED_ACTOR_HOSTS (Kubernetes; actor pods also get JOB_COMPLETION_INDEX)"
  )


def num_actors(actor_hosts: int, actors_per_host: int, overrides: list[str]) -> int:
  """actor_hosts x actors_per_host; ValueError if a --config.num_actors override says otherwise."""
  n = actor_hosts * actors_per_host
  if n <= 0:
    raise ValueError(f"the cluster has {actor_hosts} actor hosts x {actors_per_host} actors per host: no actor")
  for arg in overrides:
    if arg.startswith("--config.num_actors="):
      given = arg.split("=", 1)[1]
      if given != str(n):
        raise ValueError(
          f"--config.num_actors={given} but the cluster runs {actor_hosts} actor hosts x "
          f"{actors_per_host} actors per host = {n}; drop it or change --actors_per_host"
        )
  return n
