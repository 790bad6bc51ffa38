// Bounds of option values (validators.h): a count far beyond any machine is a usage error.

#include "tessera/cli/validators.h"

#include <gtest/gtest.h>

namespace tessera::cli {
namespace {

std::string check(const CLI::Validator& v, std::string text) {
  return v(text);
}

TEST(Validators, WholeNumberInBoundsTheValue) {
  const CLI::Validator threads = whole_number_in(1, kMaxIntraOpThreads);
  EXPECT_EQ(check(threads, "1"), "");
  EXPECT_EQ(check(threads, "1024"), "");
  EXPECT_EQ(check(threads, "100000"), "need a whole number from 1 to 1024, got '100000'");
  EXPECT_EQ(check(threads, "0"), "need a whole number from 1 to 1024, got '0'");
  EXPECT_EQ(check(threads, "2x"), "need a whole number from 1 to 1024, got '2x'");
  EXPECT_EQ(check(threads, "99999999999999999999"),
            "need a whole number from 1 to 1024, got '99999999999999999999'");
  const CLI::Validator repeat = whole_number_in(1, kMaxRepeat);
  EXPECT_EQ(check(repeat, "1000000"), "need a whole number from 1 to 1000, got '1000000'");
}

}  // namespace
}  // namespace tessera::cli
