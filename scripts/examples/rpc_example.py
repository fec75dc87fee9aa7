"""The tensor-RPC example from the op's README (seed 000), run as written.

Starts a server on a unix socket (in a private temp dir) and a loopback TCP
port, binds a batched `foo` (batch 5) and an unbatched `bar`, then calls them
through a client: five concurrent `foo` calls fill one batch.
"""

import concurrent.futures
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import portpicker
import tensorflow as tf

from seed import grpc


def main() -> None:
  sock_dir = tempfile.mkdtemp(prefix="seed-")
  try:
    port = portpicker.pick_unused_port()
    server = grpc.Server([f"unix:{sock_dir}/foo", f"localhost:{port}"])

    # This function is batched meaning it will be called once there are, in
    # this case, 5 incoming calls.
    @tf.function(input_signature=[tf.TensorSpec([5], tf.int32)])
    def foo(x):
      return x + 1

    server.bind(foo)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)])
    def bar(x, y):
      return x + y

    server.bind(bar)
    server.start()

    def batch_of_five(client, values):
      with concurrent.futures.ThreadPoolExecutor(5) as pool:
        return list(pool.map(lambda v: int(client.foo(v)), values))

    client = grpc.Client(f"unix:{sock_dir}/foo")
    results = batch_of_five(client, [42, 1, 2, 3, 4])
    print(f"client.foo(42) -> {results[0]}   (batch of 5: {results})")
    print(f"client.bar(1, 2) -> {int(client.bar(1, 2))}")
    tcp = grpc.Client(f"localhost:{port}")
    print(f"over TCP: bar(20, 22) -> {int(tcp.bar(20, 22))}, foo -> {batch_of_five(tcp, [10, 20, 30, 40, 50])}")
    print(f"server stats: {server.stats()}")
    server.shutdown()
  finally:
    shutil.rmtree(sock_dir, ignore_errors=True)


if __name__ == "__main__":
  main()
