#include "client/client.h"

#include <cstring>
#include <sstream>

#include "client/bench.h"
#include "client/output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longenc::client {
namespace {

TEST(ChannelTarget, OneAddressUsesDnsResolution) {
  EXPECT_EQ(*ChannelTarget("encoder.internal:50051"), "dns:///encoder.internal:50051");
}

TEST(ChannelTarget, ListsOfLiteralsUseTheIpSchemes) {
  EXPECT_EQ(*ChannelTarget("10.0.0.1:1,10.0.0.2:2"), "ipv4:10.0.0.1:1,10.0.0.2:2");
  EXPECT_EQ(*ChannelTarget("[::1]:1,[::1]:2"), "ipv6:[::1]:1,[::1]:2");
}

TEST(ChannelTarget, NamesInAListAreResolved) {
  absl::StatusOr<std::string> t = ChannelTarget("localhost:5,127.0.0.1:6");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*t, ::testing::HasSubstr("127.0.0.1:6"));
  EXPECT_THAT(*t, ::testing::HasSubstr(":5"));
}

TEST(ChannelTarget, ExplicitSchemesPassThroughAndErrorsNameTheFlag) {
  EXPECT_EQ(*ChannelTarget("unix:/tmp/s"), "unix:/tmp/s");
  EXPECT_EQ(ChannelTarget("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ChannelTarget("a:1,nocolon").status().message()),
              ::testing::HasSubstr("--server"));
}

TEST(Utf8, AcceptsValidAndPointsAtTheFirstBadByte) {
  size_t bad = 99;
  EXPECT_TRUE(IsValidUtf8("plain ascii", &bad));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82", &bad));
  EXPECT_FALSE(IsValidUtf8("ab\xff", &bad));
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(IsValidUtf8("x\xc3", &bad));  // truncated
  EXPECT_EQ(bad, 1u);
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf", &bad));  // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80", &bad));  // surrogate
}

std::vector<longenc::v1::Embedding> TwoRows() {
  std::vector<longenc::v1::Embedding> rows(2);
  rows[0].add_values(1.5f);
  rows[0].add_values(-2.f);
  rows[0].set_id("a");
  rows[0].set_num_tokens(3);
  rows[1].add_values(0.25f);
  rows[1].add_values(4.f);
  rows[1].set_id("b");
  rows[1].set_num_tokens(5);
  rows[1].set_truncated(true);
  return rows;
}

TEST(Output, NpyHasAnAlignedHeaderAndLittleEndianFloats) {
  std::ostringstream out;
  ASSERT_TRUE(WriteEmbeddings(TwoRows(), "npy", out).ok());
  const std::string s = out.str();
  ASSERT_EQ(s.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<unsigned char>(s[8]) | (static_cast<unsigned char>(s[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header = s.substr(10, header_len);
  EXPECT_THAT(header, ::testing::HasSubstr("'descr': '<f4'"));
  EXPECT_THAT(header, ::testing::HasSubstr("'shape': (2, 2)"));
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(s.size(), 10 + header_len + 4 * sizeof(float));
  float values[4];
  std::memcpy(values, s.data() + 10 + header_len, sizeof values);
  EXPECT_THAT(values, ::testing::ElementsAre(1.5f, -2.f, 0.25f, 4.f));
}

TEST(Output, JsonlIsOneObjectPerLine) {
  std::ostringstream out;
  ASSERT_TRUE(WriteEmbeddings(TwoRows(), "jsonl", out).ok());
  EXPECT_EQ(out.str(),
            "{\"embedding\":[1.5,-2.0],\"id\":\"a\",\"num_tokens\":3}\n"
            "{\"embedding\":[0.25,4.0],\"id\":\"b\",\"num_tokens\":5,\"truncated\":true}\n");
}

TEST(Output, UnknownFormatNamesTheFlag) {
  std::ostringstream out;
  EXPECT_THAT(std::string(WriteEmbeddings(TwoRows(), "csv", out).message()),
              ::testing::HasSubstr("--format=csv"));
}

TEST(Bench, PercentilesAreNearestRank) {
  BenchResult r;
  for (int i = 1; i <= 100; ++i) r.latencies_ms.push_back(i);
  EXPECT_EQ(r.Percentile(50), 50);
  EXPECT_EQ(r.Percentile(95), 95);
  EXPECT_EQ(r.Percentile(99), 99);
  EXPECT_EQ(r.Percentile(100), 100);
}

TEST(Bench, GeneratedDocumentsAreReproducibleAndFramed) {
  const auto a = GeneratedDocuments(3, 10, 42);
  const auto b = GeneratedDocuments(3, 10, 42);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, GeneratedDocuments(3, 10, 43));
  for (const auto& d : a) {
    ASSERT_EQ(d.size(), 10u);
    EXPECT_EQ(d.front(), 101);
    EXPECT_EQ(d.back(), 102);
  }
}

}  // namespace
}  // namespace longenc::client
