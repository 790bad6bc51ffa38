#include "tessera/report/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace tessera {

namespace {

constexpr double kWidth = 900.0;
constexpr double kHeight = 520.0;
constexpr double kCharWidth = 7.0;  // average advance of a 12 px sans-serif glyph
constexpr const char* kFont = "DejaVu Sans, Helvetica, Arial, sans-serif";
constexpr const char* kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                    "#CC79A7", "#56B4E9", "#555555", "#000000"};
constexpr const char* kDashes[] = {"", "6 3", "2 3", "8 3 2 3"};
constexpr size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

const char* colour(size_t i) {
  return kPalette[i % kPaletteSize];
}
const char* dash(size_t i) {
  return kDashes[(i / kPaletteSize) % 4];
}

// Cuts `text` to at most `max_chars` bytes (not inside a UTF-8 sequence), marking the cut.
std::string shorten(const std::string& text, size_t max_chars) {
  if (text.size() <= max_chars || max_chars < 4) return text;
  size_t cut = max_chars - 1;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + "\u2026";
}

double text_width(const std::string& text) {
  return static_cast<double>(text.size()) * kCharWidth;
}

// Maps data values onto a pixel range; linear or logarithmic.
struct Scale {
  double lo = 0.0, hi = 1.0;  // data range (lo < hi; both > 0 when log)
  double p0 = 0.0, p1 = 1.0;  // pixel range
  bool log = false;
  double operator()(double v) const {
    const double t =
        log ? (std::log(v) - std::log(lo)) / (std::log(hi) - std::log(lo)) : (v - lo) / (hi - lo);
    return p0 + t * (p1 - p0);
  }
};

std::string px(double v) {
  return fmt::format("{:.1f}", v);
}

class Svg {
 public:
  Svg(double width, double height, const std::string& title) {
    out_ = fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
        "viewBox=\"0 0 {0} {1}\" role=\"img\" font-family=\"{2}\">\n"
        "<title>{3}</title>\n"
        "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n"
        "<text class=\"title\" x=\"{4}\" y=\"28\" font-size=\"15\" font-weight=\"bold\" "
        "text-anchor=\"middle\" fill=\"#111111\">{3}</text>\n",
        px(width), px(height), kFont, xml_escape(title), px(width / 2));
  }
  void text(double x, double y, const std::string& s, int size, const char* anchor,
            const std::string& extra = "") {
    out_ += fmt::format(
        "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{}\" "
        "fill=\"#222222\"{}>{}</text>\n",
        px(x), px(y), size, anchor, extra, xml_escape(s));
  }
  void line(double x1, double y1, double x2, double y2, const char* stroke, double width = 1.0) {
    out_ += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"/>\n",
        px(x1), px(y1), px(x2), px(y2), stroke, width);
  }
  void raw(const std::string& s) { out_ += s; }
  std::string finish() { return out_ + "</svg>\n"; }

 private:
  std::string out_;
};

// Grid, ticks and labels of a y axis drawn on the left of the plot area.
void draw_y_axis(Svg& svg, const Scale& y, const std::vector<double>& ticks, double left,
                 double right, const std::string& label) {
  for (double t : ticks) {
    const double py = y(t);
    svg.line(left, py, right, py, "#e4e4e4");
    svg.line(left - 5, py, left, py, "#333333");
    svg.text(left - 8, py + 4, tick_label(t), 12, "end");
  }
  svg.line(left, y.p0, left, y.p1, "#333333");
  const double mid = (y.p0 + y.p1) / 2;
  svg.text(20, mid, label, 13, "middle", fmt::format(" transform=\"rotate(-90 20 {})\"", px(mid)));
}

void draw_x_axis(Svg& svg, const Scale& x, const std::vector<double>& ticks, double bottom,
                 const std::string& label, double label_y) {
  for (double t : ticks) {
    const double p = x(t);
    svg.line(p, bottom, p, bottom + 5, "#333333");
    svg.text(p, bottom + 19, tick_label(t), 12, "middle");
  }
  svg.line(x.p0, bottom, x.p1, bottom, "#333333");
  svg.text((x.p0 + x.p1) / 2, label_y, label, 13, "middle");
}

// Legend entries stacked at (x, y); `line` draws a line swatch, otherwise a filled square.
void draw_legend(Svg& svg, const std::vector<std::string>& names, double x, double y, bool line,
                 size_t max_chars) {
  for (size_t i = 0; i < names.size(); ++i) {
    const double row = y + 20.0 * static_cast<double>(i);
    if (line) {
      const std::string d = dash(i);
      svg.raw(fmt::format(
          "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2.5\"{}/>\n",
          px(x), px(row - 4), px(x + 22), px(row - 4), colour(i),
          d.empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", d)));
      svg.raw(fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"/>\n", px(x + 11),
                          px(row - 4), colour(i)));
    } else {
      svg.raw(fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{}\"/>\n",
                          px(x + 4), px(row - 11), colour(i)));
    }
    svg.text(x + 28, row, shorten(names[i], max_chars), 12, "start");
  }
}

// Width of the legend column (0 when there is at most one series).
double legend_width(const std::vector<std::string>& names, size_t max_chars) {
  if (names.size() <= 1) return 0.0;
  size_t longest = 0;
  for (const auto& n : names) longest = std::max(longest, std::min(n.size(), max_chars));
  return 40.0 + kCharWidth * static_cast<double>(longest);
}

// Data range -> axis range and ticks. Log axes snap to powers of `base`.
void log_axis(double lo, double hi, double base, Scale& scale, std::vector<double>& ticks) {
  double e0 = std::floor(std::log(lo) / std::log(base) + 1e-9);
  double e1 = std::ceil(std::log(hi) / std::log(base) - 1e-9);
  if (e1 <= e0) e1 = e0 + 1;
  scale.lo = std::pow(base, e0);
  scale.hi = std::pow(base, e1);
  scale.log = true;
  ticks.clear();
  const int stride = (e1 - e0) > 10 ? 2 : 1;
  for (double e = e0; e <= e1 + 1e-9; e += stride) {
    const double decade = std::pow(base, e);
    ticks.push_back(decade);
    if (base == 10.0 && e1 - e0 <= 2 && e < e1) {
      ticks.push_back(2 * decade);
      ticks.push_back(5 * decade);
    }
  }
}

void linear_axis(double lo, double hi, Scale& scale, std::vector<double>& ticks) {
  ticks = nice_ticks(lo, hi, 6);
  scale.lo = ticks.front();
  scale.hi = ticks.back();
  scale.log = false;
}

}  // namespace

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0.0, hi = 1.0;
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    const double pad = lo == 0.0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= lo == 0.0 ? 0.0 : pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude * 10.0;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * magnitude >= raw * (1 - 1e-9)) {
      step = m * magnitude;
      break;
    }
  }
  const long long first = static_cast<long long>(std::floor(lo / step + 1e-9));
  const long long last = static_cast<long long>(std::ceil(hi / step - 1e-9));
  std::vector<double> ticks;
  for (long long k = first; k <= last; ++k) {
    double v = static_cast<double>(k) * step;
    if (std::abs(v) < step * 1e-9) v = 0.0;
    ticks.push_back(v);
  }
  if (ticks.size() < 2) ticks.push_back(ticks.back() + step);
  return ticks;
}

std::string tick_label(double value) {
  if (value == std::round(value) && std::abs(value) < 1e7) {
    return fmt::format("{}", static_cast<long long>(value));
  }
  return fmt::format("{:.3g}", value);
}

std::string render_line_chart(const LineChart& chart) {
  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!chart.log2_x || x > 0) &&
           (!chart.log10_y || y > 0);
  };
  double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min;
  double y_min = x_min, y_max = -x_min;
  std::vector<std::string> names;
  for (const auto& s : chart.series) {
    names.push_back(s.name);
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!usable(s.x[i], s.y[i])) continue;
      x_min = std::min(x_min, s.x[i]);
      x_max = std::max(x_max, s.x[i]);
      y_min = std::min(y_min, s.y[i]);
      y_max = std::max(y_max, s.y[i]);
    }
  }
  const bool empty = !(x_min <= x_max);
  if (empty) {
    x_min = 1.0, x_max = 2.0, y_min = 1.0, y_max = 2.0;
  }

  const size_t max_chars = 40;
  const double left = 84.0, top = 52.0, bottom = kHeight - 64.0;
  const double right = kWidth - 24.0 - legend_width(names, max_chars);
  Svg svg(kWidth, kHeight, chart.title);

  Scale x, y;
  std::vector<double> x_ticks, y_ticks;
  if (chart.log2_x) {
    log_axis(x_min, x_max, 2.0, x, x_ticks);
  } else {
    linear_axis(x_min, x_max, x, x_ticks);
  }
  if (chart.log10_y) {
    log_axis(y_min, y_max, 10.0, y, y_ticks);
  } else {
    linear_axis(chart.y_from_zero ? std::min(0.0, y_min) : y_min, y_max, y, y_ticks);
  }
  x.p0 = left, x.p1 = right;
  y.p0 = bottom, y.p1 = top;

  draw_y_axis(svg, y, y_ticks, left, right, chart.y_label);
  draw_x_axis(svg, x, x_ticks, bottom, chart.x_label, kHeight - 18);
  if (empty) svg.text((left + right) / 2, (top + bottom) / 2, "no data", 14, "middle");

  for (size_t si = 0; si < chart.series.size(); ++si) {
    const auto& s = chart.series[si];
    std::string points, markers;
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!usable(s.x[i], s.y[i])) continue;
      const double px_ = x(s.x[i]), py = y(s.y[i]);
      if (!points.empty()) points += ' ';
      points += fmt::format("{},{}", px(px_), px(py));
      markers += fmt::format(
          "<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"><title>{}: {}, {}</title></circle>\n",
          px(px_), px(py), colour(si), xml_escape(s.name), tick_label(s.x[i]),
          xml_escape(fmt::format("{:.4g}", s.y[i])));
    }
    const std::string d = dash(si);
    svg.raw(fmt::format(
        "<polyline class=\"series\" data-series=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{}\" "
        "stroke-width=\"2.5\" stroke-linejoin=\"round\"{}/>\n",
        xml_escape(s.name), points, colour(si),
        d.empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", d)));
    svg.raw(markers);
  }
  if (names.size() > 1) draw_legend(svg, names, right + 16, top + 10, true, max_chars);
  return svg.finish();
}

std::string render_bar_chart(const BarChart& chart) {
  double y_max = 0.0;
  std::vector<std::string> names;
  for (const auto& s : chart.series) {
    names.push_back(s.name);
    for (double v : s.values) {
      if (std::isfinite(v)) y_max = std::max(y_max, v);
    }
  }
  const size_t max_chars = 40;
  const size_t n = std::max<size_t>(1, chart.categories.size());
  const double top = 52.0;
  const double right = kWidth - 24.0 - legend_width(names, max_chars);
  double left = 84.0;
  double slot = (right - left) / static_cast<double>(n);

  // Category labels that do not fit their slot are drawn at an angle (35 degrees), with room
  // below; the plot moves right when the first slanted label would run off the left edge.
  const size_t label_chars = 36;
  double longest = 0.0;
  for (const auto& c : chart.categories) {
    longest = std::max(longest, text_width(shorten(c, label_chars)));
  }
  const bool slanted = longest > slot - 6.0;
  if (slanted && chart.categories.size() > 0) {
    const double first = text_width(shorten(chart.categories[0], label_chars)) * 0.82;
    left = std::max(left, first - slot / 2 + 12.0);
    slot = (right - left) / static_cast<double>(n);
  }
  const double slant_room = slanted ? longest * 0.6 : 0.0;
  const double height = kHeight + slant_room;
  const double bottom = height - 64.0 - slant_room;

  Svg svg(kWidth, height, chart.title);
  Scale y;
  std::vector<double> y_ticks;
  linear_axis(0.0, y_max > 0 ? y_max : 1.0, y, y_ticks);
  y.p0 = bottom, y.p1 = top;
  draw_y_axis(svg, y, y_ticks, left, right, chart.y_label);
  svg.line(left, bottom, right, bottom, "#333333");

  const double group = slot * 0.8;
  const double bar = group / static_cast<double>(std::max<size_t>(1, chart.series.size()));
  for (size_t c = 0; c < chart.categories.size(); ++c) {
    const double cx = left + slot * (static_cast<double>(c) + 0.5);
    const std::string label = shorten(chart.categories[c], label_chars);
    if (slanted) {
      svg.text(cx, bottom + 16, label, 12, "end",
               fmt::format(" transform=\"rotate(-35 {} {})\"", px(cx), px(bottom + 16)));
    } else {
      svg.text(cx, bottom + 19, label, 12, "middle");
    }
    for (size_t si = 0; si < chart.series.size(); ++si) {
      const auto& values = chart.series[si].values;
      if (c >= values.size() || !std::isfinite(values[c])) continue;
      const double v = std::max(0.0, values[c]);
      const double x0 = cx - group / 2 + bar * static_cast<double>(si);
      const double y0 = y(v);
      svg.raw(fmt::format(
          "<rect class=\"bar\" data-series=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
          "fill=\"{}\"><title>{} / {}: {:.4g}</title></rect>\n",
          xml_escape(chart.series[si].name), px(x0 + 1), px(y0), px(std::max(1.0, bar - 2)),
          px(bottom - y0), colour(si), xml_escape(chart.categories[c]),
          xml_escape(chart.series[si].name), v));
      const std::string value_text = fmt::format("{:.3g}", v);
      if (text_width(value_text) <= bar + 4) {
        svg.text(x0 + bar / 2, y0 - 5, value_text, 12, "middle");
      }
    }
  }
  svg.text((left + right) / 2, height - 18, chart.x_label, 13, "middle");
  if (names.size() > 1) draw_legend(svg, names, right + 16, top + 10, false, max_chars);
  return svg.finish();
}

std::string render_hbar_chart(const HBarChart& chart) {
  const size_t label_chars = 40;
  double label_width = 60.0;
  double v_max = 0.0;
  for (const auto& l : chart.labels)
    label_width = std::max(label_width, text_width(shorten(l, label_chars)));
  for (double v : chart.values) {
    if (std::isfinite(v)) v_max = std::max(v_max, v);
  }
  const double row = 26.0;
  const double top = 52.0;
  const double rows = static_cast<double>(std::max<size_t>(1, chart.labels.size()));
  const double bottom = top + rows * row + 8.0;
  const double height = bottom + 60.0;
  const double left = 24.0 + label_width;
  const double right = kWidth - 96.0;

  Svg svg(kWidth, height, chart.title);
  Scale x;
  std::vector<double> ticks;
  linear_axis(0.0, v_max > 0 ? v_max : 1.0, x, ticks);
  x.p0 = left, x.p1 = right;
  for (double t : ticks) svg.line(x(t), top, x(t), bottom, "#e4e4e4");
  draw_x_axis(svg, x, ticks, bottom, chart.value_label, height - 18);
  svg.line(left, top, left, bottom, "#333333");

  for (size_t i = 0; i < chart.labels.size(); ++i) {
    const double y0 = top + 4.0 + row * static_cast<double>(i);
    svg.text(left - 8, y0 + 13, shorten(chart.labels[i], label_chars), 12, "end");
    if (i >= chart.values.size() || !std::isfinite(chart.values[i])) continue;
    const double v = std::max(0.0, chart.values[i]);
    const std::string value_text =
        i < chart.value_texts.size() ? chart.value_texts[i] : fmt::format("{:.3g}", v);
    const double w = std::max(1.0, x(v) - left);
    svg.raw(fmt::format(
        "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"18\" fill=\"{}\">"
        "<title>{}: {}</title></rect>\n",
        px(left), px(y0), px(w), colour(0), xml_escape(chart.labels[i]), xml_escape(value_text)));
    svg.text(left + w + 6, y0 + 13, value_text, 12, "start");
  }
  return svg.finish();
}

}  // namespace tessera
