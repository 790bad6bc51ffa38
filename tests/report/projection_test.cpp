// Projections against the study's arithmetic: 120,560,400 px per MGRS tile at 0.43 ms/pixel
// (NVIDIA L4) is 14.4 h; at 0.22 ms/pixel (24 NUMA-pinned CPU jobs) 7.4 h.

#include "tessera/report/projection.h"

#include <gtest/gtest.h>

#include "tessera/common/error.h"
#include "tessera/common/table.h"

namespace tessera {
namespace {

TEST(Projection, StudyFigures) {
  const Projection gpu = project({"L4", 0.43}, {});
  EXPECT_DOUBLE_EQ(gpu.mgrs_tile_s, 51840.972);  // 120,560,400 x 0.43 ms
  EXPECT_EQ(human_duration(gpu.mgrs_tile_s), "14.4 h");
  EXPECT_DOUBLE_EQ(gpu.grid_tile_s, 430.0);
  EXPECT_DOUBLE_EQ(gpu.planet_s, 685196400.0);  // 1,593,480 x 1e6 px x 0.43 ms
  EXPECT_EQ(human_duration(gpu.planet_s), "21.7 y");
  EXPECT_FALSE(gpu.mgrs_tile_usd.has_value());

  const Projection cpu = project({"24 jobs", 0.22}, {});
  EXPECT_DOUBLE_EQ(cpu.mgrs_tile_s, 26523.288);
  EXPECT_EQ(human_duration(cpu.mgrs_tile_s), "7.4 h");
  EXPECT_EQ(human_duration(cpu.grid_tile_s), "3.7 min");
}

TEST(Projection, MachinesDivideWallTimeNotCost) {
  ProjectionOptions options;
  options.machines = 100;
  options.usd_per_hour = 2.0;
  const Projection p = project({"L4", 0.43}, options);
  EXPECT_DOUBLE_EQ(p.planet_s, 6851964.0);
  EXPECT_EQ(human_duration(p.planet_s), "79.3 d");
  EXPECT_DOUBLE_EQ(*p.mgrs_tile_usd, 51840.972 / 3600.0 * 2.0);
  EXPECT_DOUBLE_EQ(*p.grid_tile_usd, 430.0 / 3600.0 * 2.0);
  EXPECT_DOUBLE_EQ(*p.planet_usd, 685196400.0 / 3600.0 * 2.0);  // all machine-hours
}

TEST(Projection, HumanDurationUnits) {
  EXPECT_EQ(human_duration(0.25), "0.2 s");
  EXPECT_EQ(human_duration(59.9), "59.9 s");
  EXPECT_EQ(human_duration(60.0), "1.0 min");
  EXPECT_EQ(human_duration(5399.0), "90.0 min");
  EXPECT_EQ(human_duration(5400.0), "1.5 h");
  EXPECT_EQ(human_duration(172800.0), "2.0 d");
  EXPECT_EQ(human_duration(1632960.0), "18.9 d");
  EXPECT_EQ(human_duration(365.0 * 86400.0), "1.0 y");
  EXPECT_EQ(human_duration(3.1 * 365.0 * 86400.0), "3.1 y");
}

TEST(Projection, RejectsBadInputs) {
  try {
    project({"x", 0.0}, {});
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "ms/pixel for 'x' must be a positive number, got 0");
  }
  ProjectionOptions zero;
  zero.machines = 0;
  try {
    project({"x", 1.0}, zero);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--machines must be at least 1, got 0");
  }
  ProjectionOptions negative;
  negative.usd_per_hour = -1.0;
  try {
    project({"x", 1.0}, negative);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--usd-per-hour must be a non-negative number, got -1");
  }
}

TEST(Projection, NumberList) {
  EXPECT_EQ(parse_number_list("0.43,0.22", "--ms-per-pixel"), (std::vector<double>{0.43, 0.22}));
  EXPECT_EQ(parse_number_list("5", "--ms-per-pixel"), (std::vector<double>{5.0}));
  try {
    parse_number_list("0.43,,0.22", "--ms-per-pixel");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--ms-per-pixel: '' is not a number");
  }
  try {
    parse_number_list("0.43,fast", "--ms-per-pixel");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--ms-per-pixel: 'fast' is not a number");
  }
}

TEST(Projection, TableFormats) {
  ProjectionOptions options;
  options.usd_per_hour = 1.0;
  const std::vector<Projection> ps = {project({"L4", 0.43}, options),
                                      project({"24 jobs", 0.22}, options)};
  const std::string md = projection_table(ps, false).to_markdown();
  EXPECT_NE(md.find("| L4 "), std::string::npos);
  EXPECT_NE(md.find("14.4 h"), std::string::npos);
  EXPECT_NE(md.find("7.4 h"), std::string::npos);
  EXPECT_NE(md.find("USD per MGRS tile"), std::string::npos);
  EXPECT_EQ(md.find("MGRS tile (s)"), std::string::npos);  // raw seconds only in csv/json

  const auto json = projection_table(ps, true).to_json();
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["label"], "L4");
  EXPECT_DOUBLE_EQ(json[0]["mgrs_tile_s"].get<double>(), 51840.972);
  EXPECT_EQ(json[0]["mgrs_tile"], "14.4 h");
  EXPECT_DOUBLE_EQ(json[1]["mgrs_tile_s"].get<double>(), 26523.288);
  EXPECT_EQ(json[1]["machines"], 1);
  EXPECT_DOUBLE_EQ(json[1]["mgrs_tile_usd"].get<double>(), 26523.288 / 3600.0);

  const std::string csv = projection_table({project({"L4", 0.43}, {})}, true).to_csv();
  EXPECT_EQ(
      csv.substr(0, csv.find('\n')),
      "label,ms_per_pixel,grid_tile,mgrs_tile,planet,grid_tile_s,mgrs_tile_s,planet_s,machines");
}

TEST(Table, MarkdownCellsStayInTheirCell) {
  Table table({{"a", "A", -1, false}, {"b", "B", -1, false}});
  table.add_row({"x|y", "line 1\nline 2"});
  EXPECT_EQ(table.to_markdown(),
            "| A    | B             |\n| ---- | ------------- |\n| x\\|y | line 1 line 2 |\n");
}

}  // namespace
}  // namespace tessera
