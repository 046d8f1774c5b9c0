// Registry and option parsing: names, unknown variants, duplicate registration, typed readers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/attention/registry.h"

namespace longenc::attention {
namespace {

using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

TEST(Registry, ListsEveryVariantLinkedWholeArchive) {
  EXPECT_THAT(Registry::Global().Names(), IsSupersetOf({"full", "clustered", "iclustered", "yoso", "cast"}));
}

TEST(Registry, UnknownNameIsInvalidArgumentListingKnownNames) {
  auto attention = Registry::Global().Create("no_such_attention", AttentionSpec{});
  ASSERT_FALSE(attention.ok());
  EXPECT_EQ(attention.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(attention.status().message(), HasSubstr("no_such_attention"));
  EXPECT_THAT(attention.status().message(), HasSubstr("full"));
}

absl::StatusOr<std::unique_ptr<Attention>> NullFactory(const AttentionSpec&) {
  return absl::UnimplementedError("test factory");
}

TEST(Registry, DuplicateNameIsAlreadyExists) {
  Registry registry;
  ASSERT_TRUE(registry.Register("x", NullFactory).ok());
  EXPECT_EQ(registry.Register("x", NullFactory).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Register("", NullFactory).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Create("x", AttentionSpec{}).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(registry.Names(), std::vector<std::string>{"x"});
}

TEST(ParseAttentionOptions, SplitsAndTrims) {
  auto options = ParseAttentionOptions(" clusters = 25, topk=32 ");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(*options, (std::map<std::string, std::string>{{"clusters", "25"}, {"topk", "32"}}));
  auto empty = ParseAttentionOptions("  ");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ParseAttentionOptions, RejectsMalformedItems) {
  EXPECT_EQ(ParseAttentionOptions("clusters").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAttentionOptions("=3").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAttentionOptions("a=1,a=2").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAttentionOptions("a=1,,b=2").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OptionReader, DefaultsWhenAbsentAndTypedValuesWhenGiven) {
  const std::map<std::string, std::string> options = {
      {"n", "7"}, {"x", "0.5"}, {"b", "true"}, {"mode", "sa"}, {"file", "/tmp/f"}};
  OptionReader reader("v", options);
  EXPECT_EQ(*reader.Int("n", 1, 0, 10), 7);
  EXPECT_EQ(*reader.Int("absent", 3, 0, 10), 3);
  EXPECT_DOUBLE_EQ(*reader.Double("x", 1.0, 0.0, 1.0), 0.5);
  EXPECT_TRUE(*reader.Bool("b", false));
  EXPECT_EQ(*reader.Choice("mode", "topk", {"topk", "sa"}), "sa");
  EXPECT_EQ(*reader.String("file", ""), "/tmp/f");
  EXPECT_TRUE(reader.Finish().ok());
}

TEST(OptionReader, ErrorsNameVariantOptionAndValue) {
  const std::map<std::string, std::string> options = {
      {"n", "abc"}, {"m", "11"}, {"b", "maybe"}, {"mode", "x"}, {"typo", "1"}};
  OptionReader reader("iclustered", options);
  absl::Status bad_int = reader.Int("n", 1, 0, 10).status();
  EXPECT_EQ(bad_int.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_int.message(), HasSubstr("iclustered"));
  EXPECT_THAT(bad_int.message(), HasSubstr("n='abc'"));
  EXPECT_THAT(reader.Int("m", 1, 0, 10).status().message(), HasSubstr("outside [0, 10]"));
  EXPECT_FALSE(reader.Bool("b", false).ok());
  EXPECT_THAT(reader.Choice("mode", "topk", {"topk", "sa"}).status().message(),
              HasSubstr("topk, sa"));
  absl::Status unknown = reader.Finish();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.message(), HasSubstr("typo"));
  EXPECT_THAT(unknown.message(), HasSubstr("known options"));
}

}  // namespace
}  // namespace longenc::attention
