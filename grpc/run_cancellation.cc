#include "run_cancellation.h"

#include <atomic>

namespace seed_rpc {

using tensorflow::CancellationManager;
using tensorflow::CancellationToken;

namespace {

// CancellationManager has no API to start its tokens elsewhere than 0. An
// explicit template instantiation may name a private member (C++ [temp.spec]),
// which gives the address of the token counter; the layout is the one of the
// headers this op is compiled against, i.e. of the installed TensorFlow.
struct NextToken {
  using type = std::atomic<CancellationToken> CancellationManager::*;
  friend type Member(NextToken);
};
template <typename Tag, typename Tag::type M>
struct Expose {
  friend typename Tag::type Member(Tag) { return M; }
};
template struct Expose<NextToken, &CancellationManager::next_cancellation_token_>;

// Above every token of every freed manager (process-wide: the heap is).
std::atomic<CancellationToken> token_floor{0};

}  // namespace

std::shared_ptr<CancellationManager> NewRunCancellation(CancellationManager* parent) {
  auto* cm = new CancellationManager(parent);
  (cm->*Member(NextToken{})).store(token_floor.load());
  return std::shared_ptr<CancellationManager>(cm, [](CancellationManager* cm) {
    // Raise the floor before the address can be reused.
    CancellationToken next = (cm->*Member(NextToken{})).load();
    CancellationToken floor = token_floor.load();
    while (floor < next && !token_floor.compare_exchange_weak(floor, next)) {
    }
    delete cm;
  });
}

}  // namespace seed_rpc
