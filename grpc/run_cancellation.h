// A CancellationManager per function run whose tokens never repeat at a
// reused address.
//
// Why: TensorFlow's blocking queue ops (QueueBase::Cancel, also gates and
// accumulators) find the blocked op to cancel by (manager address, token) and
// stop at the first match, even an entry already cancelled whose run is over.
// Such stale entries stay in the queue until they reach its front, i.e. for as
// long as an earlier op blocks there. A per-run manager freed and allocated
// again at the same address restarts its tokens at 0, so a later run's entry
// can hide behind a stale one: its client's deadline, and Shutdown, no longer
// reach it. The run keeps waiting, takes an item enqueued later for nobody,
// and Shutdown waits for it forever (scripts/stress_cancel.py).
#pragma once

#include <memory>

#include "tensorflow/core/framework/cancellation.h"

namespace seed_rpc {

// A child of `parent` whose first token is above every token issued by a
// manager this function made and that has been freed since.
std::shared_ptr<tensorflow::CancellationManager> NewRunCancellation(tensorflow::CancellationManager* parent);

}  // namespace seed_rpc
