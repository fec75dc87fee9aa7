// The tiny harness of the C++ unit tests (batcher_test.cc, stream_test.cc):
// EXPECT/EXPECT_EQ/REQUIRE mark the running case failed; RunCases prints
// "PASS <case>" or "FAIL <case>" per case (the Python tests read these) and
// returns the process's exit status. A hang fails the binary (alarm).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <utility>
#include <vector>

namespace seed_cc_test {

inline bool case_failed = false;

inline int RunCases(const std::vector<std::pair<const char*, void (*)()>>& cases) {
  alarm(120);  // a hang anywhere fails the binary rather than the test run
  int failed = 0;
  for (const auto& [name, fn] : cases) {
    case_failed = false;
    fn();
    std::printf("%s %s\n", case_failed ? "FAIL" : "PASS", name);
    std::fflush(stdout);
    failed += case_failed;
  }
  std::printf("%d of %zu cases failed\n", failed, cases.size());
  return failed == 0 ? 0 : 1;
}

}  // namespace seed_cc_test

#define EXPECT(cond)                                                    \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::printf("  %s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      seed_cc_test::case_failed = true;                                 \
    }                                                                   \
  } while (0)
#define EXPECT_EQ(a, b)                                                        \
  do {                                                                         \
    auto va = (a);                                                             \
    auto vb = (b);                                                             \
    if (!(va == vb)) {                                                         \
      std::printf("  %s:%d: expected %s == %s\n", __FILE__, __LINE__, #a, #b); \
      seed_cc_test::case_failed = true;                                        \
    }                                                                          \
  } while (0)
// Stops the case: later checks would read what is not there.
#define REQUIRE(cond) \
  do {                \
    EXPECT(cond);     \
    if (!(cond)) return; \
  } while (0)
