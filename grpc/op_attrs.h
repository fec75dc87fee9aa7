// The attr every op with a free-form string attr carries (addresses, paths,
// method and model names).
//
// TensorFlow runs each eager op as a function and caches its kernel under a
// key that abbreviates every string attr of 80 or more characters to its
// first and last 10 (SummarizeString, tensorflow/core/framework/
// attr_value_util.cc). Two servers at unix:/a/long/path/0/learner.sock and
// .../1/learner.sock would then share one kernel: the second would listen
// on the first's socket, and a client would call whichever server the
// abbreviation met first. seed/grpc.py sets attrs_digest to a fingerprint of
// the op's string attrs, so the keys differ whenever the strings do. Kernels
// ignore it; 0 (graphs written before it existed) changes nothing.
#ifndef SEED_GRPC_OP_ATTRS_H_
#define SEED_GRPC_OP_ATTRS_H_

#define SEED_ATTRS_DIGEST Attr("attrs_digest: int = 0")

#endif  // SEED_GRPC_OP_ATTRS_H_
