#pragma once
// Small, dependency-free SVG charts for `tessera report`: line charts, grouped bar charts and
// horizontal bar charts. A chart is a plain struct of data; render_*() turns it into one
// self-contained SVG document (no scripts, fonts, images or links to fetch).
//
// Every chart has a <title> and a visible title, labelled axes with tick labels, a legend when
// it has more than one series, a fixed viewBox and white background. All text is XML-escaped.
// Output is deterministic: the same struct always gives the same bytes.
//
// Structure the tests rely on: each line series is one <polyline class="series">, each bar is
// one <rect class="bar">, and the visible title is <text class="title">.

#include <string>
#include <vector>

namespace tessera {

// One line of a line chart. Invariant: x.size() == y.size(). Points with a non-finite or
// (on a log axis) non-positive coordinate are left out.
struct LineSeries {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
};

struct LineChart {
  std::string title;
  std::string x_label;  // with units, e.g. "threads per session"
  std::string y_label;  // with units, e.g. "ms per pixel"
  bool log2_x = false;  // powers of two on x (batch sizes, thread counts)
  bool log10_y = false;
  bool y_from_zero = true;  // linear y axis starts at 0 (ignored for log10_y)
  std::vector<LineSeries> series;
};

// One series of a grouped bar chart: a value per category (NaN = no bar).
struct BarSeries {
  std::string name;
  std::vector<double> values;
};

// Vertical bars, one group per category, one bar per series inside a group.
// Invariant: every series has categories.size() values.
struct BarChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<std::string> categories;
  std::vector<BarSeries> series;
};

// One bar per label, drawn left to right from zero. `value_texts`, when not empty, holds the
// text printed at the end of each bar (e.g. "14.4 h"); otherwise the number is printed.
struct HBarChart {
  std::string title;
  std::string value_label;  // the x axis, with units
  std::vector<std::string> labels;
  std::vector<double> values;
  std::vector<std::string> value_texts;
};

std::string render_line_chart(const LineChart& chart);
std::string render_bar_chart(const BarChart& chart);
std::string render_hbar_chart(const HBarChart& chart);

// Escapes & < > " ' and replaces characters XML 1.0 forbids (control characters) with '?'.
std::string xml_escape(const std::string& text);

// Round tick values covering [lo, hi] (about `target` of them, step 1, 2, 2.5 or 5 x 10^k).
std::vector<double> nice_ticks(double lo, double hi, int target);

// A tick label: integers without decimals, other numbers with 3 significant digits.
std::string tick_label(double value);

}  // namespace tessera
