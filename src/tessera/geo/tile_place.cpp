#include "tessera/geo/tile_place.h"

#include <cpl_conv.h>
#include <fmt/format.h>
#include <gdal_priv.h>
#include <ogr_spatialref.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "tessera/common/error.h"
#include "tessera/geo/gdal_session.h"

namespace tessera {
namespace {

constexpr double kCellHalf = 0.05;     // degrees: a cell is 0.1 x 0.1
constexpr double kLandmaskPixel = 10;  // metres

// A decimal number filling all of `text`, or nullopt.
std::optional<double> parse_number(const std::string& text) {
  if (text.empty() || text.find_first_not_of("+-.0123456789") != std::string::npos)
    return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

// The CRS as WKT (WKT2, GDAL's default), never empty for a valid CRS.
std::string wkt_of(const OGRSpatialReference& srs) {
  char* text = nullptr;
  srs.exportToWkt(&text);
  std::string wkt = text ? text : "";
  CPLFree(text);
  return wkt;
}

// The EPSG code of `srs`, 0 when it has none.
int epsg_of(OGRSpatialReference& srs) {
  const char* authority = srs.GetAuthorityName(nullptr);
  if (authority == nullptr || std::string(authority) != "EPSG") srs.AutoIdentifyEPSG();
  authority = srs.GetAuthorityName(nullptr);
  const char* code = srs.GetAuthorityCode(nullptr);
  if (authority == nullptr || code == nullptr || std::string(authority) != "EPSG") return 0;
  return std::atoi(code);
}

// The projected CRS of an opened raster; throws Error naming `path` when it has none.
OGRSpatialReference projected_crs_of(GDALDataset& dataset, const std::string& path) {
  const OGRSpatialReference* crs = dataset.GetSpatialRef();
  if (crs == nullptr || crs->IsEmpty()) throw Error(path + ": has no CRS (need a projected CRS)");
  if (!crs->IsProjected()) {
    throw Error(fmt::format("{}: its CRS ({}) is not projected (need metres, e.g. UTM)", path,
                            crs->GetName() ? crs->GetName() : "unnamed"));
  }
  return *crs;
}

// Origin and pixel size of a north-up grid of square pixels; throws Error naming `path` else.
void read_north_up_transform(GDALDataset& dataset, const std::string& path, TileGeometry& g) {
  std::array<double, 6> t{};
  if (dataset.GetGeoTransform(t.data()) != CE_None)
    throw Error(path + ": has no geotransform (cannot place its pixels)");
  if (t[2] != 0 || t[4] != 0) {
    throw Error(fmt::format("{}: its grid is rotated (geotransform [{}]): need north-up", path,
                            fmt::join(t, ", ")));
  }
  if (!(t[1] > 0) || !(t[5] < 0)) {
    throw Error(fmt::format("{}: its grid is not north-up (pixel size {} x {})", path, t[1], t[5]));
  }
  if (std::fabs(t[1] + t[5]) > 1e-9 * t[1]) {
    throw Error(fmt::format("{}: its pixels are not square ({} x {})", path, t[1], -t[5]));
  }
  g.origin_x = t[0];
  g.origin_y = t[3];
  g.pixel_size = t[1];
}

bool regular_file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::optional<GridCell> parse_grid_name(const std::string& grid) {
  const std::string prefix = "grid_";
  if (grid.rfind(prefix, 0) != 0) return std::nullopt;
  const std::string rest = grid.substr(prefix.size());
  // The separator is the underscore after the longitude (a minus sign is never an underscore).
  const auto cut = rest.find('_');
  if (cut == std::string::npos) return std::nullopt;
  const auto lon = parse_number(rest.substr(0, cut));
  const auto lat = parse_number(rest.substr(cut + 1));
  if (!lon || !lat || std::fabs(*lon) > 180 || std::fabs(*lat) > 90) return std::nullopt;
  return GridCell{*lon, *lat};
}

std::string grid_name_of(const GridCell& cell) {
  return fmt::format("grid_{:.2f}_{:.2f}", cell.lon, cell.lat);
}

TileGeometry grid_cell_geometry(const GridCell& cell) {
  ensure_gdal_registered();
  const int zone = std::clamp(static_cast<int>(std::floor((cell.lon + 180) / 6)) + 1, 1, 60);
  const int epsg = (cell.lat >= 0 ? 32600 : 32700) + zone;
  OGRSpatialReference lonlat, utm;
  lonlat.importFromEPSG(4326);
  utm.importFromEPSG(epsg);
  lonlat.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);  // x = lon, y = lat
  utm.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
  const std::unique_ptr<OGRCoordinateTransformation> to_utm(
      OGRCreateCoordinateTransformation(&lonlat, &utm));
  std::array<double, 4> x = {cell.lon - kCellHalf, cell.lon + kCellHalf, cell.lon - kCellHalf,
                             cell.lon + kCellHalf};
  std::array<double, 4> y = {cell.lat + kCellHalf, cell.lat + kCellHalf, cell.lat - kCellHalf,
                             cell.lat - kCellHalf};
  const std::string grid = grid_name_of(cell);
  if (!to_utm || !to_utm->Transform(4, x.data(), y.data())) {
    throw Error(fmt::format("{}: cannot project its corners to EPSG:{} ({})", grid, epsg,
                            gdal_error_text()));
  }
  TileGeometry g;
  g.crs_wkt = wkt_of(utm);
  g.epsg = epsg;
  g.pixel_size = kLandmaskPixel;
  g.origin_x = *std::min_element(x.begin(), x.end());
  g.origin_y = *std::max_element(y.begin(), y.end());
  const double east = *std::max_element(x.begin(), x.end());
  const double south = *std::min_element(y.begin(), y.end());
  g.width = static_cast<int>(std::lround((east - g.origin_x) / kLandmaskPixel));
  g.height = static_cast<int>(std::lround((g.origin_y - south) / kLandmaskPixel));
  g.source = "grid name " + grid;
  return g;
}

TileGeometry read_raster_geometry(const std::string& path) {
  ensure_gdal_registered();
  const QuietGdalErrors quiet;
  const char* const drivers[] = {"GTiff", nullptr};
  const GDALDatasetUniquePtr dataset(GDALDataset::Open(
      path.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY | GDAL_OF_VERBOSE_ERROR, drivers));
  if (!dataset) {
    const std::string detail = gdal_error_text();
    if (detail.find("not recognized as a supported file format") != std::string::npos)
      throw Error(path + ": not a GeoTIFF (GDAL does not recognise its format)");
    throw Error(fmt::format("{}: not a readable GeoTIFF ({})", path, detail));
  }
  OGRSpatialReference crs = projected_crs_of(*dataset, path);
  TileGeometry g;
  read_north_up_transform(*dataset, path, g);
  g.crs_wkt = wkt_of(crs);
  g.epsg = epsg_of(crs);
  g.width = dataset->GetRasterXSize();
  g.height = dataset->GetRasterYSize();
  g.source = path;
  return g;
}

std::string roi_tiff_path(const std::string& tile_dir) {
  return (std::filesystem::path(tile_dir) / "roi.tiff").string();
}

TilePlace locate_tile(const std::string& what, const std::string& grid,
                      const std::vector<std::string>& rasters, int64_t height, int64_t width) {
  TilePlace place;
  place.cell = parse_grid_name(grid);
  for (const std::string& raster : rasters) {
    if (!regular_file_exists(raster)) continue;
    place.geometry = read_raster_geometry(raster);
    if (place.geometry->height != height || place.geometry->width != width) {
      throw Error(fmt::format("{}: is {} x {} pixels (H x W), but {} is {} x {}", raster,
                              place.geometry->height, place.geometry->width, what, height, width));
    }
    return place;
  }
  if (!place.cell) return place;
  place.geometry = grid_cell_geometry(*place.cell);
  if (place.geometry->height != height || place.geometry->width != width) {
    throw Error(fmt::format(
        "{}: the landmask grid of {} is {} x {} pixels (H x W), but the tile is {} x {} (give it "
        "a roi.tiff)",
        what, grid, place.geometry->height, place.geometry->width, height, width));
  }
  place.note = fmt::format("{}: no roi.tiff; placed on the landmask grid of its name (EPSG:{})",
                           what, place.geometry->epsg);
  return place;
}

}  // namespace tessera
