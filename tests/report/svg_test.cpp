// SVG charts: structure the report relies on (one polyline per line series, one rect per bar),
// escaping, ticks and determinism. Well-formedness is parsed by tests/reference/check_svg.py.

#include <gtest/gtest.h>

#include <cmath>

#include "tessera/report/svg_chart.h"

namespace tessera {
namespace {

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

LineChart batch_chart() {
  LineChart c;
  c.title = "ms per pixel by batch size";
  c.x_label = "batch size (pixels)";
  c.y_label = "ms per pixel";
  c.log2_x = true;
  c.series = {{"ort/cpu", {32, 256, 4096}, {5.62, 5.05, 6.18}},
              {"ort/cuda:0", {32, 256, 5120}, {0.63, 0.44, 0.43}}};
  return c;
}

TEST(SvgChart, Escape) {
  EXPECT_EQ(xml_escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
  EXPECT_EQ(xml_escape(std::string("bell\x07!")), "bell?!");
  EXPECT_EQ(xml_escape("0.1° tile · ok"), "0.1° tile · ok");
}

TEST(SvgChart, Ticks) {
  EXPECT_EQ(nice_ticks(0, 5.62, 6), (std::vector<double>{0, 1, 2, 3, 4, 5, 6}));
  const std::vector<double> small = nice_ticks(0, 0.63, 6);  // step 0.2 (0.105 rounded up)
  ASSERT_EQ(small.size(), 5u);
  for (size_t i = 0; i < small.size(); ++i) EXPECT_NEAR(small[i], 0.2 * i, 1e-12);
  EXPECT_EQ(nice_ticks(0, 48168, 6), (std::vector<double>{0, 10000, 20000, 30000, 40000, 50000}));
  EXPECT_EQ(nice_ticks(3, 3, 6).size(), 7u);  // a flat range is padded by 10%: 2.7 .. 3.3
  EXPECT_EQ(tick_label(1024), "1024");
  EXPECT_EQ(tick_label(0.25), "0.25");
  EXPECT_EQ(tick_label(0.1 + 0.2), "0.3");
}

TEST(SvgChart, LineChartStructure) {
  const std::string svg = render_line_chart(batch_chart());
  EXPECT_EQ(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 0), 0u);
  EXPECT_NE(svg.find("viewBox=\"0 0 900.0 520.0\""), std::string::npos);
  EXPECT_NE(svg.find("<title>ms per pixel by batch size</title>"), std::string::npos);
  EXPECT_NE(svg.find("class=\"title\""), std::string::npos);
  EXPECT_NE(svg.find(">batch size (pixels)</text>"), std::string::npos);
  EXPECT_NE(svg.find(">ms per pixel</text>"), std::string::npos);
  EXPECT_EQ(count(svg, "<polyline class=\"series\""), 2u);
  EXPECT_EQ(count(svg, "<circle "), 6u + 2u);  // markers + legend swatches
  // log2 x axis: every power of two from 32 to 8192 is a tick.
  for (const char* tick : {">32</text>", ">1024</text>", ">8192</text>"}) {
    EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  }
  EXPECT_NE(svg.find(">ort/cuda:0</text>"), std::string::npos);  // legend
  EXPECT_EQ(svg.find("href"), std::string::npos);                // nothing external
  EXPECT_EQ(svg, render_line_chart(batch_chart()));              // deterministic
}

TEST(SvgChart, SingleSeriesHasNoLegend) {
  LineChart c = batch_chart();
  c.series.resize(1);
  c.title = "A <b> & \"c\"";
  const std::string svg = render_line_chart(c);
  EXPECT_EQ(count(svg, "<polyline class=\"series\""), 1u);
  EXPECT_EQ(svg.find(">ort/cpu</text>"), std::string::npos);
  EXPECT_NE(svg.find("<title>A &lt;b&gt; &amp; &quot;c&quot;</title>"), std::string::npos);
}

TEST(SvgChart, LogAxisSkipsNonPositivePoints) {
  LineChart c = batch_chart();
  c.log10_y = true;
  c.series[0].y[1] = 0.0;
  c.series[1].y[2] = NAN;
  const std::string svg = render_line_chart(c);
  EXPECT_EQ(count(svg, "<circle "), 4u + 2u);
  EXPECT_NE(svg.find(">0.1</text>"), std::string::npos);
  EXPECT_NE(svg.find(">10</text>"), std::string::npos);
}

TEST(SvgChart, GroupedBars) {
  BarChart c{"Layouts",
             "layout",
             "ms per pixel",
             {"1x16", "12x32", "24x16"},
             {{"per-job", {3.33, 4.33, 5.21}}, {"aggregate", {3.33, 0.38, NAN}}}};
  const std::string svg = render_bar_chart(c);
  EXPECT_EQ(count(svg, "<rect class=\"bar\""), 5u);  // the NaN bar is left out
  EXPECT_EQ(count(svg, "data-series=\"per-job\""), 3u);
  EXPECT_NE(svg.find(">24x16</text>"), std::string::npos);
  EXPECT_NE(svg.find(">aggregate</text>"), std::string::npos);
  EXPECT_NE(svg.find(">layout</text>"), std::string::npos);
}

TEST(SvgChart, HorizontalBars) {
  HBarChart c{"Hours per MGRS tile",
              "hours",
              {"ort/cuda:0", "ort/cpu/24x16"},
              {14.4, 7.37},
              {"14.4 h", "7.4 h"}};
  const std::string svg = render_hbar_chart(c);
  EXPECT_EQ(count(svg, "<rect class=\"bar\""), 2u);
  EXPECT_NE(svg.find(">14.4 h</text>"), std::string::npos);
  EXPECT_NE(svg.find(">ort/cpu/24x16</text>"), std::string::npos);
  EXPECT_NE(svg.find(">hours</text>"), std::string::npos);
}

}  // namespace
}  // namespace tessera
