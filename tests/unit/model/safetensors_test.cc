#include "model/encoder/safetensors.h"

#include <cstring>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace longenc::encoder {
namespace {

using ::testing::HasSubstr;

// Builds a file from a raw JSON header and a data buffer.
std::string File(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string Floats(std::initializer_list<float> values) {
  std::string bytes(values.size() * 4, '\0');
  std::memcpy(bytes.data(), values.begin(), bytes.size());
  return bytes;
}

absl::Status ParseError(const std::string& bytes) {
  return SafetensorsFile::Parse(bytes, "model.safetensors").status();
}

TEST(Safetensors, ParsesValidFile) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}})";
  auto file = SafetensorsFile::Parse(File(header, Floats({1, 2, 3, 4})), "m");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors().size(), 2u);
  const TensorView* b = file->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2}));
  float values[2];
  std::memcpy(values, b->data, 8);
  EXPECT_EQ(values[0], 3);
  EXPECT_EQ(values[1], 4);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->Find("c"), nullptr);
}

TEST(Safetensors, RoundTripsThroughWriter) {
  const std::string path = ::testing::TempDir() + "/roundtrip.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {{"x", DType::kF32, {2, 2}, Floats({1, 2, 3, 4})},
                                      {"y", DType::kI8, {3}, std::string("\x01\x02\x03", 3)}},
                               {{"kind", "test"}})
                  .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->Find("x")->numel(), 4);
  EXPECT_EQ(file->Find("y")->dtype, DType::kI8);
  EXPECT_EQ(file->metadata().at("kind"), "test");
}

TEST(Safetensors, WriterRejectsDuplicatesAndWrongSizes) {
  const std::string path = ::testing::TempDir() + "/bad.safetensors";
  EXPECT_FALSE(WriteSafetensors(path, {{"x", DType::kF32, {1}, Floats({1})},
                                       {"x", DType::kF32, {1}, Floats({1})}})
                   .ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"x", DType::kF32, {2}, Floats({1})}}).ok());
}

TEST(Safetensors, MissingFileIsNotFound) {
  auto s = SafetensorsFile::Open("/nonexistent/model.safetensors").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent/model.safetensors"));
}

struct CorruptCase {
  const char* name;
  std::string bytes;
  const char* message;
};

class SafetensorsCorrupt : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(SafetensorsCorrupt, IsRejectedWithAMessage) {
  absl::Status s = ParseError(GetParam().bytes);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.safetensors"));
  EXPECT_THAT(s.message(), HasSubstr(GetParam().message));
}

std::string HeaderLength(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

const std::string kF32x2 = R"("dtype":"F32","shape":[2])";

INSTANTIATE_TEST_SUITE_P(
    AllClasses, SafetensorsCorrupt,
    ::testing::Values(
        CorruptCase{"TooShort", "abc", "fewer than the 8-byte header length"},
        CorruptCase{"HugeHeader", HeaderLength(200ull << 20) + "{}", "exceeds the 100 MB limit"},
        CorruptCase{"HeaderPastEnd", HeaderLength(100) + "{}", "runs past the end"},
        CorruptCase{"NotJson", File("{not json", ""), "not valid JSON"},
        CorruptCase{"NotObject", File("[1,2]", ""), "not a JSON object"},
        CorruptCase{"UnknownDtype",
                    File(R"({"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", Floats({1})),
                    "unknown dtype 'F17'"},
        CorruptCase{"NegativeDim",
                    File(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", Floats({1})),
                    "negative or non-integer dimension"},
        CorruptCase{"MissingOffsets", File(R"({"a":{)" + kF32x2 + "}}", Floats({1, 2})),
                    "'data_offsets' is not a pair"},
        CorruptCase{"OffsetsPastBuffer",
                    File(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0,16]}})", Floats({1, 2})),
                    "run outside the 8-byte data buffer"},
        CorruptCase{"ReversedOffsets",
                    File(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[8,0]}})", Floats({1, 2})),
                    "run outside"},
        CorruptCase{"SizeMismatch",
                    File(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", Floats({1, 2})),
                    "holds 8 bytes but F32 [3] needs 12"},
        CorruptCase{"ShapeOverflow",
                    File(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
                         Floats({1, 2})),
                    "overflows"},
        CorruptCase{"Overlap",
                    File(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0,8]},"b":{)" + kF32x2 +
                             R"(,"data_offsets":[4,12]}})",
                         Floats({1, 2, 3})),
                    "overlaps"},
        CorruptCase{"Gap",
                    File(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[4,12]}})", Floats({1, 2, 3})),
                    "gap of 4 bytes"},
        CorruptCase{"TrailingBytes",
                    File(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0,8]}})", Floats({1, 2, 3})),
                    "bytes after the last tensor"},
        CorruptCase{"DuplicateName",
                    File(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0,8]},"a":{)" + kF32x2 +
                             R"(,"data_offsets":[0,8]}})",
                         Floats({1, 2})),
                    "duplicate tensor name 'a'"},
        CorruptCase{"BadMetadata", File(R"({"__metadata__":{"x":1}})", ""), "is not a string"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace longenc::encoder
