#include "orchestrator/config/units.h"

#include <gtest/gtest.h>

namespace qwenmux::orchestrator {
namespace {

TEST(OrchestratorUnits, Durations) {
  EXPECT_EQ(*ParseDuration("0"), Duration::Millis(0));
  EXPECT_EQ(*ParseDuration("-1"), Duration::Forever());
  EXPECT_EQ(*ParseDuration("30s"), Duration::Millis(30000));
  EXPECT_EQ(*ParseDuration("5m"), Duration::Millis(300000));
  EXPECT_EQ(*ParseDuration("1h"), Duration::Millis(3600000));
  EXPECT_EQ(*ParseDuration("1h30m"), Duration::Millis(5400000));
  EXPECT_EQ(*ParseDuration("250ms"), Duration::Millis(250));
  EXPECT_EQ(*ParseDuration("1.5s"), Duration::Millis(1500));
  EXPECT_EQ(*ParseDuration(" 2d "), Duration::Millis(2 * 86400000LL));
  for (const char* bad : {"5x", "", "5", "m", "-5m", "30m1h", "1h1h", "1..5s", "5 m", "-2", "1e3s",
                          "999999999999d"}) {
    Result<Duration> d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.status().message().find("is not a duration"), std::string::npos) << d.status().message();
  }
}

TEST(OrchestratorUnits, FormatDurationRoundTrips) {
  for (const char* s : {"0", "-1", "5m", "1h30m", "250ms", "2d", "1m1s"}) {
    EXPECT_EQ(FormatDuration(*ParseDuration(s)), s);
  }
}

TEST(OrchestratorUnits, Sizes) {
  EXPECT_EQ(*ParseSize("1024"), 1024u);
  EXPECT_EQ(*ParseSize("24GiB"), 24ull << 30);
  EXPECT_EQ(*ParseSize("24G"), 24ull << 30);
  EXPECT_EQ(*ParseSize("24GB"), 24ull << 30);
  EXPECT_EQ(*ParseSize("24 gib"), 24ull << 30);
  EXPECT_EQ(*ParseSize("512M"), 512ull << 20);
  EXPECT_EQ(*ParseSize("1.5T"), 3ull << 39);
  EXPECT_EQ(*ParseSize("4k"), 4096u);
  for (const char* bad : {"", "G", "24X", "-1G", "24GiBs", "1.5", "9999999999T", "24 G B"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
  EXPECT_EQ(FormatSize(512), "512 B");
  EXPECT_EQ(FormatSize(24ull << 30), "24.0 GiB");
}

TEST(OrchestratorUnits, MemoryAmounts) {
  MemoryAmount p = *ParseMemoryAmount("75%");
  EXPECT_TRUE(p.is_percent);
  EXPECT_EQ(p.Resolve(64ull << 30), 48ull << 30);
  MemoryAmount b = *ParseMemoryAmount("24GiB");
  EXPECT_FALSE(b.is_percent);
  EXPECT_EQ(b.Resolve(64ull << 30), 24ull << 30);
  for (const char* bad : {"0%", "101%", "%", "x%", "-5%", "75%%"}) {
    EXPECT_FALSE(ParseMemoryAmount(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace qwenmux::orchestrator
